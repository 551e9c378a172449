// T5 fidelity: the logits and loss of the tiny random T5 (every weight and norm random), in both
// variants (v1.1 / flan-t5: gated-gelu, untied lm_head; v1.0: relu, tied head scaled by
// d_model^-0.5), equal those of a transcription of transformers' eager T5ForConditionalGeneration
// (t5_reference.py, run on Debian's python3-torch): in float64 to rounding, in float32 to float32
// rounding. The inputs are long enough to reach the logarithmic relative-position buckets, and
// padded on both sides (an encoder row with padding, labels with -100).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "worker/model/t5.h"
#include "worker/model/t5_loader.h"
#include "worker/model/tiny_t5.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

// A python3 with torch: Debian's (/usr/bin/python3 with python3-torch) or the one on PATH.
std::string PythonWithTorch() {
  for (const char* python : {"/usr/bin/python3", "python3"}) {
    const std::string cmd = std::string(python) + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return python;
  }
  return "";
}

nlohmann::json Rows(const torch::Tensor& t) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t b = 0; b < t.size(0); ++b) {
    std::vector<int64_t> row;
    for (int64_t j = 0; j < t.size(1); ++j) row.push_back(t[b][j].item<int64_t>());
    rows.push_back(row);
  }
  return rows;
}

struct Reference {
  torch::Tensor logits;  // (B, T, vocab) float64
  double loss = 0;
};

Reference RunReference(const std::string& python, const fs::path& model_dir, const fs::path& work,
                       const torch::Tensor& ids, const torch::Tensor& mask,
                       const torch::Tensor& labels, const std::string& dtype) {
  nlohmann::json in = {
      {"input_ids", Rows(ids)}, {"attention_mask", Rows(mask)}, {"labels", Rows(labels)}};
  std::ofstream(work / "input.json") << in.dump();
  const fs::path out = work / ("out_" + dtype + ".bin");
  const std::string cmd = python + " " + PEFTD_SOURCE_DIR + "/tests/worker_model/t5_reference.py " +
                          model_dir.string() + " " + (work / "input.json").string() + " " +
                          out.string() + " " + dtype;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  const int64_t vocab = TinyT5Config().vocab_size;
  const size_t n = static_cast<size_t>(labels.numel() * vocab);
  EXPECT_EQ(bytes.size(), (n + 1) * sizeof(double));
  if (bytes.size() != (n + 1) * sizeof(double)) return {};
  Reference r;
  r.logits = torch::from_blob(bytes.data(), {labels.size(0), labels.size(1), vocab}, torch::kDouble)
                 .clone();
  std::memcpy(&r.loss, bytes.data() + n * sizeof(double), sizeof(double));
  return r;
}

// The model's mean cross-entropy over labels != -100, as HF's loss.
double Loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  return F::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kDouble),
                          labels.reshape({-1}), F::CrossEntropyFuncOptions().ignore_index(-100))
      .item<double>();
}

class T5ReferenceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    python_ = PythonWithTorch();
    if (python_.empty())
      GTEST_SKIP() << "no python3 with torch (Debian: apt-get install python3-torch)";
    work_ = fs::temp_directory_path() / ("peftd_t5_ref_" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    ASSERT_TRUE(WriteTinyT5Model((work_ / "model").string(), 1, "float32", GetParam()).ok());
  }
  void TearDown() override { fs::remove_all(work_); }

  std::string python_;
  fs::path work_;
  // A full row of 14 tokens (relative distances up to 13 reach the logarithmic buckets of an
  // 8-bucket, distance-20 model) and a right-padded one; ids across the vocabulary.
  torch::Tensor ids_ = torch::tensor({{5, 17, 300, 42, 7, 99, 509, 3, 255, 510, 12, 13, 14, 510},
                                      {1, 2, 3, 4, 5, 6, 7, 510, 511, 511, 511, 511, 511, 511}},
                                     torch::kLong);
  torch::Tensor mask_ = torch::tensor(
      {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0}},
      torch::kLong);
  torch::Tensor labels_ =
      torch::tensor({{8, 9, 10, 11, 400, 12, 13, 14, 15, 16, 17, 510},
                     {20, 21, 22, 510, -100, -100, -100, -100, -100, -100, -100, -100}},
                    torch::kLong);
};

TEST_P(T5ReferenceTest, Float64LogitsAndLossEqualTransformersEagerT5) {
  auto model = LoadT5((work_ / "model").string());
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  torch::Tensor ours = (*model)->forward(ids_, mask_, labels_);
  Reference ref = RunReference(python_, work_ / "model", work_, ids_, mask_, labels_, "float64");
  ASSERT_TRUE(ref.logits.defined());
  // Every decoder position is compared: HF's padded targets still have logits (the loss skips
  // them).
  EXPECT_LT((ours - ref.logits).abs().max().item<double>(), 1e-10)
      << "max |ours − transformers| in float64";
  EXPECT_NEAR(Loss(ours, labels_), ref.loss, 1e-10);
  // The logits are not trivially small: a wrong layer would show.
  EXPECT_GT(ref.logits.abs().max().item<double>(), 0.5);
}

TEST_P(T5ReferenceTest, Float32LogitsEqualTransformersEagerT5) {
  auto model = LoadT5((work_ / "model").string());
  ASSERT_TRUE(model.ok()) << model.status();
  torch::NoGradGuard no_grad;
  torch::Tensor ours = (*model)->forward(ids_, mask_, labels_).to(torch::kDouble);
  Reference ref = RunReference(python_, work_ / "model", work_, ids_, mask_, labels_, "float32");
  ASSERT_TRUE(ref.logits.defined());
  EXPECT_LT((ours - ref.logits).abs().max().item<double>(), 1e-4)
      << "max |ours − transformers| in float32";
  EXPECT_NEAR(Loss(ours, labels_), ref.loss, 1e-4);
}

// The encoder's padding changes nothing for the real tokens: the padded row's logits equal those
// of the same row alone without padding (the mask, not the pad ids, decides).
TEST_P(T5ReferenceTest, EncoderPaddingIsMaskedOut) {
  auto model = LoadT5((work_ / "model").string());
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  torch::Tensor padded = (*model)->forward(ids_, mask_, labels_)[1];
  torch::Tensor alone =
      (*model)->forward(ids_.narrow(0, 1, 1).narrow(1, 0, 8), mask_.narrow(0, 1, 1).narrow(1, 0, 8),
                        labels_.narrow(0, 1, 1))[0];
  EXPECT_LT((padded - alone).abs().max().item<double>(), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Variants, T5ReferenceTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("V1_0ReluTied")
                                             : std::string("V1_1GatedGeluUntied");
                         });

}  // namespace
}  // namespace peftd::model
