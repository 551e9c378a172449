// DeBERTa-v3 fidelity: the last hidden states and classifier logits of the tiny random DeBERTa-v3
// (every weight, bias and LayerNorm parameter random, the relative embeddings, pooler and
// classifier included) equal those of a transcription of transformers' eager
// DebertaV2ForSequenceClassification (deberta_reference.py, run on Debian's python3-torch), in
// float64 to rounding and in float32 to float32 rounding. Sequences of 10 and 24 tokens reach the
// logarithmic position buckets (8 buckets: offsets past ±4 are bucketed) and the clamp at the
// table's edge. Hidden states are compared at real tokens only (padding's are never read); a
// padded row checks the XSoftmax mask (other ids in the padded positions change nothing). A
// DeBERTa-v2 variant (absolute positions added to the input, token types, c2p only, no buckets,
// no relative LayerNorm, tanh pooler) checks the options v3 leaves off.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "worker/model/deberta_v2.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/tiny_deberta_v2.h"

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
                       const ModelConfig& c, const torch::Tensor& ids, const torch::Tensor& mask,
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
                          "/tests/worker_model/deberta_reference.py " + model_dir.string() + " " +
                          (work / "input.json").string() + " " + out.string() + " " + dtype;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
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

// A DeBERTa-v2-style variant of the tiny config.
ModelConfig VariantConfig() {
  ModelConfig c = TinyDebertaV2Config();
  c.position_biased_input = true;
  c.type_vocab_size = 2;
  c.pos_att_p2c = false;
  c.position_buckets = -1;
  c.max_relative_positions = 6;  // offsets past ±6 clamp at the table's edge
  c.norm_rel_ebd_layer_norm = false;
  c.pooler_hidden_act = "tanh";
  c.activation_function = "gelu_new";
  return c;
}

class DebertaReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = PythonWithTorch();
    if (python_.empty())
      GTEST_SKIP() << "no python3 with torch (Debian: apt-get install python3-torch)";
    work_ = fs::temp_directory_path() / ("peftd_deberta_ref_" + std::to_string(::getpid()));
    fs::remove_all(work_);
    fs::create_directories(work_);
  }
  void TearDown() override { fs::remove_all(work_); }

  void Compare(const ModelConfig& config, const torch::Tensor& ids, const torch::Tensor& mask,
               torch::Dtype dtype, const std::string& name, double tolerance) {
    const fs::path dir = work_ / "model";
    fs::remove_all(dir);
    ASSERT_TRUE(WriteTinyDebertaV2Model(dir.string(), 1, "float32", config).ok());
    LoadOptions o;
    o.dtype = dtype;
    auto model = LoadDebertaV2(dir.string(), o);
    ASSERT_TRUE(model.ok()) << model.status();
    torch::NoGradGuard no_grad;
    torch::Tensor hidden = (*model)->Hidden(ids, mask);
    torch::Tensor logits = (*model)->Classify(hidden).to(torch::kDouble);
    Reference ref = RunReference(python_, dir, work_, config, ids, mask, name);
    ASSERT_TRUE(ref.hidden.defined());
    torch::Tensor real = mask.to(torch::kBool);
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
    torch::Tensor other = torch::where(mask.eq(0), torch::full_like(ids, 77), ids);
    EXPECT_LT(((*model)->forward(other, mask)[1].to(torch::kDouble) - ref.logits[1])
                  .abs()
                  .max()
                  .item<double>(),
              tolerance);
  }

  std::string python_;
  fs::path work_;
  // A full row and a right-padded one ([PAD] = 0), [CLS] = 1 first, [SEP] = 2 last.
  torch::Tensor ids_ = torch::tensor(
      {{1, 17, 300, 42, 7, 99, 510, 3, 255, 2}, {1, 5, 17, 300, 42, 6, 2, 0, 0, 0}}, torch::kLong);
  torch::Tensor mask_ =
      torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 0, 0, 0}}, torch::kLong);
};

// 24 tokens: offsets up to ±23 land in the logarithmic buckets.
torch::Tensor LongIds() {
  torch::Tensor ids = torch::randint(4, 511, {2, 24}, torch::TensorOptions().dtype(torch::kLong));
  ids.index_put_({torch::indexing::Slice(), 0}, 1);
  ids.index_put_({0, 23}, 2);
  ids.index_put_({1, 15}, 2);
  ids.index_put_({1, torch::indexing::Slice(16)}, 0);
  return ids;
}
torch::Tensor LongMask() {
  torch::Tensor mask = torch::ones({2, 24}, torch::kLong);
  mask.index_put_({1, torch::indexing::Slice(16)}, 0);
  return mask;
}

TEST_F(DebertaReferenceTest, Float64EqualsTransformersEagerDebertaV3) {
  Compare(TinyDebertaV2Config(), ids_, mask_, torch::kDouble, "float64", 1e-10);
}

TEST_F(DebertaReferenceTest, Float32EqualsTransformersEagerDebertaV3) {
  Compare(TinyDebertaV2Config(), ids_, mask_, torch::kFloat32, "float32", 1e-4);
}

TEST_F(DebertaReferenceTest, LongSequencesReachTheLogBuckets) {
  torch::manual_seed(3);
  Compare(TinyDebertaV2Config(), LongIds(), LongMask(), torch::kDouble, "float64", 1e-10);
}

TEST_F(DebertaReferenceTest, DebertaV2OptionsEqualTransformers) {
  torch::manual_seed(4);
  Compare(VariantConfig(), LongIds(), LongMask(), torch::kDouble, "float64", 1e-10);
}

// make_log_bucket_position at the values worked by hand: mid = 4, max_position 128.
TEST(DebertaRelativePositionsTest, LogBuckets) {
  torch::Tensor rel = DebertaRelativePositions(1, 24, 8, 128)[0];
  // i − j for i = 0: 0, −1, …, −23. |δ| <= 4 stays; ceil(ln(|δ|/4) / ln(127/4) · 3) + 4 beyond.
  EXPECT_EQ(rel[4].item<int64_t>(), -4);
  EXPECT_EQ(rel[5].item<int64_t>(), -5);   // ln 1.25 / ln 31.75 · 3 = 0.19 -> 1
  EXPECT_EQ(rel[9].item<int64_t>(), -5);   // ln 2.25 / ln 31.75 · 3 = 0.70 -> 1
  EXPECT_EQ(rel[20].item<int64_t>(), -6);  // ln 5 / ln 31.75 · 3 = 1.40 -> 2
  EXPECT_EQ(DebertaRelativePositions(3, 3, -1, 128)[2][0].item<int64_t>(), 2);
}

}  // namespace
}  // namespace peftd::model
