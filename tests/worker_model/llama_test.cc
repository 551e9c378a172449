// The LLaMA family: loading generated HF folders (single file, sharded, BF16), RoPE (incl. llama3
// scaling), GQA, causal and padding masks, the classification head, tied embeddings, refusals.
#include "worker/model/llama.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_model_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

torch::Tensor Ids() {
  return torch::tensor({{5, 17, 300, 42, 7, 99}, {1, 2, 3, 4, 5, 6}}, torch::kLong);
}

class TinyModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(TempDir("tiny"));
    ASSERT_TRUE(WriteTinyModel(dir_->string()).ok());
  }
  static fs::path* dir_;
};
fs::path* TinyModelTest::dir_ = nullptr;

TEST_F(TinyModelTest, WritesARealHfFolderDeterministically) {
  for (const char* f :
       {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(*dir_ / f)) << f;
  }
  fs::path again = TempDir("tiny_again");
  ASSERT_TRUE(WriteTinyModel(again.string()).ok());
  std::ifstream a(*dir_ / "model.safetensors", std::ios::binary),
      b(again / "model.safetensors", std::ios::binary);
  EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b)));
  auto tok = nlohmann::json::parse(std::ifstream(*dir_ / "tokenizer.json"));
  EXPECT_EQ(tok["model"]["type"], "BPE");
  EXPECT_EQ(tok["model"]["vocab"].size(), 512u);
  EXPECT_GT(tok["model"]["merges"].size(), 50u);
  EXPECT_EQ(tok["added_tokens"][2]["content"], "<|pad|>");
  EXPECT_LT(fs::file_size(*dir_ / "model.safetensors"), 8u << 20);
}

TEST_F(TinyModelTest, LoadedModelEqualsTheSameWeightsBuiltInMemory) {
  auto loaded = LoadLlama(dir_->string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Llama built(TinyConfig());
  auto weights = adapters::LoadTensors((*dir_ / "model.safetensors").string());
  {
    torch::NoGradGuard no_grad;
    for (auto& item : built->named_parameters()) item.value().copy_(weights->at(item.key()));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor logits = (*loaded)->forward(Ids(), {});
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 6, 512}));
  EXPECT_TRUE(torch::equal(logits, built->forward(Ids(), {})));
  EXPECT_FALSE(torch::isnan(logits).any().item<bool>());
}

TEST_F(TinyModelTest, ShardedAndBf16FoldersLoadToTheSameModel) {
  torch::NoGradGuard no_grad;
  torch::Tensor reference = (*LoadLlama(dir_->string()))->forward(Ids(), {});
  fs::path sharded = TempDir("sharded");
  ASSERT_TRUE(WriteTinyModel(sharded.string(), /*shards=*/3).ok());
  EXPECT_TRUE(fs::exists(sharded / "model.safetensors.index.json"));
  auto s = LoadLlama(sharded.string());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(torch::equal((*s)->forward(Ids(), {}), reference));
  fs::path bf16 = TempDir("bf16");
  ASSERT_TRUE(WriteTinyModel(bf16.string(), 1, /*bf16=*/true).ok());
  auto b = LoadLlama(bf16.string());
  ASSERT_TRUE(b.ok()) << b.status();
  // The same weights rounded through BF16, computed in fp32.
  Llama rounded = *LoadLlama(dir_->string());
  for (auto& p : rounded->parameters()) p.copy_(p.to(torch::kBFloat16).to(torch::kFloat));
  EXPECT_TRUE(torch::equal((*b)->forward(Ids(), {}), rounded->forward(Ids(), {})));
}

TEST_F(TinyModelTest, RefusalsNameTheTensor) {
  auto weights = *adapters::LoadTensors((*dir_ / "model.safetensors").string());
  fs::path bad = TempDir("bad");
  fs::create_directories(bad);
  fs::copy_file(*dir_ / "config.json", bad / "config.json");
  auto missing = weights;
  missing.erase("model.layers.2.mlp.up_proj.weight");
  ASSERT_TRUE(adapters::SaveTensors((bad / "model.safetensors").string(), missing).ok());
  EXPECT_NE(LoadLlama(bad.string())
                .status()
                .message()
                .find("no tensor 'model.layers.2.mlp.up_proj.weight'"),
            std::string::npos);
  auto misshaped = weights;
  misshaped["model.norm.weight"] = torch::ones({63});
  ASSERT_TRUE(adapters::SaveTensors((bad / "model.safetensors").string(), misshaped).ok());
  auto st = LoadLlama(bad.string()).status();
  EXPECT_NE(st.message().find("'model.norm.weight' has shape [63]"), std::string::npos) << st;
  EXPECT_NE(st.message().find("needs [64]"), std::string::npos) << st;
  auto extra = weights;
  extra["model.layers.9.mlp.up_proj.weight"] = torch::ones({2});
  ASSERT_TRUE(adapters::SaveTensors((bad / "model.safetensors").string(), extra).ok());
  EXPECT_NE(LoadLlama(bad.string()).status().message().find("model.layers.9.mlp.up_proj.weight"),
            std::string::npos);
  std::ofstream(bad / "config.json")
      << R"({"architectures": ["BertForMaskedLM"], "vocab_size": 10})";
  EXPECT_NE(LoadLlama(bad.string()).status().message().find("'BertForMaskedLM' is not supported"),
            std::string::npos);
}

TEST(Rope, DefaultInverseFrequencies) {
  ModelConfig c = TinyConfig();
  torch::Tensor f = RopeInverseFrequencies(c);
  ASSERT_EQ(f.numel(), 8);
  for (int i = 0; i < 8; ++i) {
    EXPECT_FLOAT_EQ(f[i].item<float>(), static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / 16)));
  }
}

TEST(Rope, Llama3ScalingMatchesTheHandComputation) {
  ModelConfig c = TinyConfig();
  c.head_dim = 128;
  c.rope_theta = 500000.0;
  c.llama3_rope = Llama3RopeScaling{.factor = 8,
                                    .low_freq_factor = 1,
                                    .high_freq_factor = 4,
                                    .original_max_position_embeddings = 8192};
  torch::Tensor f = RopeInverseFrequencies(c);
  for (int i : {0, 20, 40, 47, 50, 63}) {
    const double inv = static_cast<float>(1.0 / std::pow(500000.0, 2.0 * i / 128));
    const double wavelen = 2 * M_PI / inv;
    double want;
    if (wavelen < 8192.0 / 4) {
      want = inv;  // high frequency: unchanged
    } else if (wavelen > 8192.0 / 1) {
      want = inv / 8;  // low frequency: divided by the factor
    } else {
      const double smooth = (8192.0 / wavelen - 1) / (4 - 1);
      want = (1 - smooth) * inv / 8 + smooth * inv;
    }
    EXPECT_NEAR(f[i].item<double>(), want, want * 1e-5) << i;
  }
}

TEST(Attention, GqaEqualsMhaWithRepeatedKvHeads) {
  torch::manual_seed(1);
  ModelConfig gqa = TinyConfig();
  gqa.num_hidden_layers = 1;
  ModelConfig mha = gqa;
  mha.num_key_value_heads = gqa.num_attention_heads;
  Llama a(gqa), b(mha);
  torch::NoGradGuard no_grad;
  for (auto& p : a->parameters()) p.normal_(0, 0.05);
  for (auto& item : b->named_parameters()) {
    torch::Tensor src = a->named_parameters()[item.key()];
    if (item.key().find("k_proj") != std::string::npos ||
        item.key().find("v_proj") != std::string::npos) {
      // HF repeat_kv: kv head j serves query heads j·G .. j·G + G − 1.
      const int64_t g = gqa.num_attention_heads / gqa.num_key_value_heads;
      src = src.view({gqa.num_key_value_heads, 1, gqa.head_dim, -1})
                .expand({-1, g, -1, -1})
                .reshape(item.value().sizes());
    }
    item.value().copy_(src);
  }
  EXPECT_TRUE(torch::allclose(a->forward(Ids(), {}), b->forward(Ids(), {}), 1e-5, 1e-6));
}

TEST(Masks, LaterTokensDoNotChangeEarlierLogitsAndPaddingIsInvisible) {
  torch::manual_seed(2);
  Llama m(TinyConfig());
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0, 0.05);
  torch::Tensor ids = torch::tensor({{10, 20, 30, 40}}, torch::kLong);
  torch::Tensor base = m->forward(ids, {});
  torch::Tensor changed = m->forward(torch::tensor({{10, 20, 30, 41}}, torch::kLong), {});
  EXPECT_TRUE(torch::equal(base.narrow(1, 0, 3), changed.narrow(1, 0, 3)));
  EXPECT_FALSE(torch::allclose(base.narrow(1, 3, 1), changed.narrow(1, 3, 1)));
  // Right padding.
  torch::Tensor right = m->forward(torch::tensor({{10, 20, 30, 40, 0, 0}}, torch::kLong),
                                   torch::tensor({{1, 1, 1, 1, 0, 0}}, torch::kLong));
  EXPECT_TRUE(torch::allclose(right.narrow(1, 0, 4), base, 1e-5, 1e-5));
  // Left padding: positions count real tokens only.
  torch::Tensor left = m->forward(torch::tensor({{0, 0, 10, 20, 30, 40}}, torch::kLong),
                                  torch::tensor({{0, 0, 1, 1, 1, 1}}, torch::kLong));
  EXPECT_TRUE(torch::allclose(left.narrow(1, 2, 4), base, 1e-5, 1e-5));
  EXPECT_FALSE(torch::isnan(left).any().item<bool>());
}

TEST(Classification, ScoresTheLastRealTokenAndTheHeadTrains) {
  torch::manual_seed(3);
  ModelConfig c = TinyConfig();
  c.architecture = "LlamaForSequenceClassification";
  c.sequence_classification = true;
  c.num_labels = 3;
  Llama m(c);
  EXPECT_FALSE(m->lm_head);
  ASSERT_TRUE(m->score);
  EXPECT_TRUE(m->score->weight.requires_grad());
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0, 0.05);
  torch::Tensor ids = torch::tensor({{10, 20, 30, 0, 0}, {0, 10, 20, 30, 40}}, torch::kLong);
  torch::Tensor mask = torch::tensor({{1, 1, 1, 0, 0}, {0, 1, 1, 1, 1}}, torch::kLong);
  torch::Tensor out = m->forward(ids, mask);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 3}));
  torch::Tensor h = m->Hidden(ids, mask);
  EXPECT_TRUE(torch::allclose(out[0], m->Head(h[0][2]), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(out[1], m->Head(h[1][4]), 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(LastTokenIndex(mask), torch::tensor({2, 4}, torch::kLong)));
}

TEST(TiedEmbeddings, NoLmHeadAndTheEmbeddingIsTheHead) {
  ModelConfig c = TinyConfig();
  c.tie_word_embeddings = true;
  Llama m(c);
  EXPECT_FALSE(m->lm_head);
  for (const auto& item : m->named_parameters()) EXPECT_NE(item.key(), "lm_head.weight");
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  torch::Tensor h = torch::randn({2, 64});
  // Close, not equal: the head's GEMM (adapters::Gemm) may run other kernels than ATen's matmul,
  // which sum in another order: float rounding of sums whose terms reach the logits' scale (30
  // here), so the bound is relative to that scale.
  torch::Tensor ours = m->Head(h), ref = torch::matmul(h, m->model->embed_tokens->weight.t());
  const double scale = ref.abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(ours, ref, 1e-5, 1e-6 * scale))
      << (ours - ref).abs().max() << " of " << ref.abs().max();
}

}  // namespace
}  // namespace peftd::model
