// RoBERTa fidelity: the last hidden states and classifier logits of the tiny random RoBERTa (every
// weight, bias and LayerNorm parameter random, the classifier included) equal those of a
// transcription of transformers' eager RobertaForSequenceClassification (roberta_reference.py, run
// on Debian's python3-torch), in float64 to rounding and in float32 to float32 rounding. Hidden
// states are compared at real tokens only (padding's are never read); a padded row checks the
// positions counted from padding_idx + 1 and the padding mask (other ids in the padded positions
// change nothing).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "worker/model/roberta.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/tiny_roberta.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

std::string PythonWithTorch() {
  for (const char* python : {"/usr/bin/python3", "python3"}) {
    const std::string cmd = std::string(python) + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return python;
  }
  return "";
}

struct Reference {
  torch::Tensor hidden;  // (B, T, hidden)
  torch::Tensor logits;  // (B, num_labels)
};

Reference RunReference(const std::string& python, const fs::path& model_dir, const fs::path& work,
                       const torch::Tensor& ids, const torch::Tensor& mask,
                       const std::string& dtype) {
  nlohmann::json in;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    std::vector<int64_t> row_ids, row_mask;
    for (int64_t t = 0; t < ids.size(1); ++t) {
      row_ids.push_back(ids[b][t].item<int64_t>());
      row_mask.push_back(mask[b][t].item<int64_t>());
    }
    in["input_ids"].push_back(row_ids);
    in["attention_mask"].push_back(row_mask);
  }
  std::ofstream(work / "input.json") << in.dump();
  const fs::path out = work / ("out_" + dtype + ".bin");
  const std::string cmd = python + " " + PEFTD_SOURCE_DIR +
                          "/tests/worker_model/roberta_reference.py " + model_dir.string() + " " +
                          (work / "input.json").string() + " " + out.string() + " " + dtype;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  const ModelConfig c = TinyRobertaConfig();
  const int64_t hidden_n = ids.numel() * c.hidden_size, logits_n = ids.size(0) * c.num_labels;
  const size_t expected = static_cast<size_t>(hidden_n + logits_n) * sizeof(double);
  EXPECT_EQ(bytes.size(), expected);
  if (bytes.size() != expected) return {};
  auto* data = reinterpret_cast<double*>(bytes.data());
  Reference r;
  r.hidden =
      torch::from_blob(data, {ids.size(0), ids.size(1), c.hidden_size}, torch::kDouble).clone();
  r.logits = torch::from_blob(data + hidden_n, {ids.size(0), c.num_labels}, torch::kDouble).clone();
  return r;
}

class RobertaReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = PythonWithTorch();
    if (python_.empty())
      GTEST_SKIP() << "no python3 with torch (Debian: apt-get install python3-torch)";
    work_ = fs::temp_directory_path() / ("peftd_roberta_ref_" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    ASSERT_TRUE(WriteTinyRobertaModel((work_ / "model").string()).ok());
  }
  void TearDown() override { fs::remove_all(work_); }

  void Compare(torch::Dtype dtype, const std::string& name, double tolerance) {
    LoadOptions o;
    o.dtype = dtype;
    auto model = LoadRoberta((work_ / "model").string(), o);
    ASSERT_TRUE(model.ok()) << model.status();
    torch::NoGradGuard no_grad;
    torch::Tensor hidden = (*model)->Hidden(ids_, mask_);
    torch::Tensor logits = (*model)->Classify(hidden).to(torch::kDouble);
    Reference ref = RunReference(python_, work_ / "model", work_, ids_, mask_, name);
    ASSERT_TRUE(ref.hidden.defined());
    torch::Tensor real = mask_.to(torch::kBool);
    const double hidden_diff = (hidden.to(torch::kDouble).index({real}) - ref.hidden.index({real}))
                                   .abs()
                                   .max()
                                   .item<double>();
    EXPECT_LT(hidden_diff, tolerance) << "max |ours − transformers| of the hidden states, " << name;
    EXPECT_LT((logits - ref.logits).abs().max().item<double>(), tolerance)
        << "max |ours − transformers| of the logits, " << name;
    // Not trivially small: a wrong layer or head would show.
    EXPECT_GT(ref.logits.abs().max().item<double>(), 0.1);
    // Whatever the padded positions hold, the padded row's logits stay: padding is masked.
    torch::Tensor other = ids_.clone();
    other.index_put_({1, torch::indexing::Slice(7)}, 77);
    EXPECT_LT(((*model)->forward(other, mask_)[1].to(torch::kDouble) - ref.logits[1])
                  .abs()
                  .max()
                  .item<double>(),
              tolerance);
  }

  std::string python_;
  fs::path work_;
  // A full row and a right-padded one (<pad> = 1), <s> = 0 first, </s> = 2 last; ids across the
  // vocabulary.
  torch::Tensor ids_ = torch::tensor(
      {{0, 17, 300, 42, 7, 99, 510, 3, 255, 2}, {0, 5, 17, 300, 42, 6, 2, 1, 1, 1}}, torch::kLong);
  torch::Tensor mask_ =
      torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 0, 0, 0}}, torch::kLong);
};

TEST_F(RobertaReferenceTest, Float64EqualsTransformersEagerRoberta) {
  Compare(torch::kDouble, "float64", 1e-10);
}

TEST_F(RobertaReferenceTest, Float32EqualsTransformersEagerRoberta) {
  Compare(torch::kFloat32, "float32", 1e-4);
}

}  // namespace
}  // namespace peftd::model
