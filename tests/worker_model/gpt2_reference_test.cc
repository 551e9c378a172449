// GPT-2 fidelity: the logits of the tiny random GPT-2 (every weight, bias and LayerNorm parameter
// random) equal those of a transcription of transformers' eager GPT-2 (gpt2_reference.py, run on
// Debian's python3-torch), in float64 to rounding and in float32 to float32 rounding. Only the
// positions of real tokens are compared (HF gives padding other positions; no loss reads them).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "worker/model/gpt2.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/tiny_gpt2.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

// A python3 with torch: Debian's (/usr/bin/python3 with python3-torch) or the one on PATH.
std::string PythonWithTorch() {
  for (const char* python : {"/usr/bin/python3", "python3"}) {
    const std::string cmd = std::string(python) + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return python;
  }
  return "";
}

torch::Tensor ReferenceLogits(const std::string& python, const fs::path& model_dir,
                              const fs::path& work, const torch::Tensor& ids,
                              const torch::Tensor& mask, const std::string& dtype) {
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
  const fs::path out = work / ("logits_" + dtype + ".bin");
  const std::string cmd = python + " " + PEFTD_SOURCE_DIR +
                          "/tests/worker_model/gpt2_reference.py " + model_dir.string() + " " +
                          (work / "input.json").string() + " " + out.string() + " " + dtype;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
  const int64_t vocab = TinyGpt2Config().vocab_size;
  EXPECT_EQ(bytes.size(), static_cast<size_t>(ids.numel() * vocab) * sizeof(double));
  if (bytes.size() != static_cast<size_t>(ids.numel() * vocab) * sizeof(double)) return {};
  return torch::from_blob(bytes.data(), {ids.size(0), ids.size(1), vocab}, torch::kDouble).clone();
}

class Gpt2ReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = PythonWithTorch();
    if (python_.empty())
      GTEST_SKIP() << "no python3 with torch (Debian: apt-get install python3-torch)";
    work_ = fs::temp_directory_path() / ("peftd_gpt2_ref_" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
    ASSERT_TRUE(WriteTinyGpt2Model((work_ / "model").string()).ok());
  }
  void TearDown() override { fs::remove_all(work_); }

  std::string python_;
  fs::path work_;
  // A full row and a right-padded one; ids across the vocabulary, specials included.
  torch::Tensor ids_ = torch::tensor(
      {{5, 17, 300, 42, 7, 99, 510, 3, 255, 511}, {1, 2, 3, 4, 5, 6, 7, 0, 0, 0}}, torch::kLong);
  torch::Tensor mask_ =
      torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 0, 0, 0}}, torch::kLong);
};

// Logits of the real tokens only (B rows flattened).
torch::Tensor Real(const torch::Tensor& logits, const torch::Tensor& mask) {
  return logits.index({mask.to(torch::kBool)});
}

TEST_F(Gpt2ReferenceTest, Float64LogitsEqualTransformersEagerGpt2) {
  auto model = LoadGpt2((work_ / "model").string());
  ASSERT_TRUE(model.ok()) << model.status();
  (*model)->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  torch::Tensor ours = (*model)->forward(ids_, mask_);
  torch::Tensor reference =
      ReferenceLogits(python_, work_ / "model", work_, ids_, mask_, "float64");
  ASSERT_TRUE(reference.defined());
  const double diff = (Real(ours, mask_) - Real(reference, mask_)).abs().max().item<double>();
  EXPECT_LT(diff, 1e-10) << "max |ours − transformers| in float64";
  // The logits are not trivially small: a wrong layer would show.
  EXPECT_GT(Real(reference, mask_).abs().max().item<double>(), 0.1);
}

TEST_F(Gpt2ReferenceTest, Float32LogitsEqualTransformersEagerGpt2) {
  auto model = LoadGpt2((work_ / "model").string());
  ASSERT_TRUE(model.ok()) << model.status();
  torch::NoGradGuard no_grad;
  torch::Tensor ours = (*model)->forward(ids_, mask_).to(torch::kDouble);
  torch::Tensor reference =
      ReferenceLogits(python_, work_ / "model", work_, ids_, mask_, "float32");
  ASSERT_TRUE(reference.defined());
  const double diff = (Real(ours, mask_) - Real(reference, mask_)).abs().max().item<double>();
  EXPECT_LT(diff, 1e-4) << "max |ours − transformers| in float32";
}

}  // namespace
}  // namespace peftd::model
