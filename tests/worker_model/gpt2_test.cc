// GPT-2 (GPT2LMHeadModel): config.json parsing, the module list the server uses pinned to the
// model the worker builds, loading generated HF folders (single file, sharded, BF16, FP16, keys
// with or without "transformer.", the old attn.bias buffers), Conv1D weights read transposed,
// refusals naming the tensor, padding and packing.
#include "worker/model/gpt2.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "adapters/safetensors_torch.h"
#include "common/model_modules.h"
#include "nlohmann/json.hpp"
#include "worker/model/gpt2_loader.h"
#include "worker/model/tiny_gpt2.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_gpt2_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

torch::Tensor Ids() {
  return torch::tensor({{5, 17, 300, 42, 7, 99}, {1, 2, 3, 4, 5, 6}}, torch::kLong);
}

class Gpt2Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(TempDir("tiny"));
    ASSERT_TRUE(WriteTinyGpt2Model(dir_->string()).ok());
  }
  static Gpt2 Load(const fs::path& dir) {
    auto m = LoadGpt2(dir.string());
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  static fs::path* dir_;
};
fs::path* Gpt2Test::dir_ = nullptr;

TEST(Gpt2Config, ParsesGpt2FieldNamesAndRefusesWhatChangesTheMath) {
  auto c = ParseModelConfig(R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
      "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
      "n_ctx": 1024, "n_inner": null, "layer_norm_epsilon": 1e-05,
      "activation_function": "gelu_new", "bos_token_id": 50256, "eos_token_id": 50256})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->IsGpt2());
  EXPECT_EQ(c->hidden_size, 768);
  EXPECT_EQ(c->intermediate_size, 3072);  // n_inner null: 4 * n_embd
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->NumParameters(), 124439808);  // gpt2 (124M), as HF counts it
  EXPECT_EQ(DefaultTargetModules(*c), std::vector<std::string>{"c_attn"});
  EXPECT_EQ(SupportedTaskTypes(c->architecture), std::vector<std::string>{"CAUSAL_LM"});
  EXPECT_EQ(SupportedTaskTypes("LlamaForCausalLM"),
            (std::vector<std::string>{"CAUSAL_LM", "SEQ_CLS"}));
  EXPECT_EQ(SupportedTaskTypes("Qwen2ForSequenceClassification"),
            std::vector<std::string>{"SEQ_CLS"});
  EXPECT_TRUE(SupportedTaskTypes("BertForMaskedLM").empty());

  const std::string base =
      R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 10, "n_embd": 8, "n_layer": 1,
          "n_head": 2, "n_positions": 16)";
  EXPECT_TRUE(ParseModelConfig(base + "}").ok());
  auto bad = [&](const std::string& extra) {
    return std::string(ParseModelConfig(base + ", " + extra + "}").status().message());
  };
  EXPECT_NE(bad(R"("activation_function": "relu")").find("activation_function: 'relu'"),
            std::string::npos);
  EXPECT_NE(bad(R"("scale_attn_by_inverse_layer_idx": true)")
                .find("scale_attn_by_inverse_layer_idx: true is not supported"),
            std::string::npos);
  EXPECT_NE(bad(R"("reorder_and_upcast_attn": true)").find("reorder_and_upcast_attn"),
            std::string::npos);
  EXPECT_NE(ParseModelConfig(R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 10,
                "n_embd": 9, "n_layer": 1, "n_head": 2, "n_positions": 16})")
                .status()
                .message()
                .find("n_head: does not divide n_embd"),
            std::string::npos);
  EXPECT_NE(ParseModelConfig(R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 10,
                "n_layer": 1, "n_head": 2, "n_positions": 16})")
                .status()
                .message()
                .find("n_embd: missing"),
            std::string::npos);
  // What make-tiny-model writes parses back to the same config.
  auto back = ParseModelConfig(ModelConfigJson(TinyGpt2Config()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ModelConfigJson(*back), ModelConfigJson(TinyGpt2Config()));
}

TEST(Gpt2Config, LinearModulesAreTheModelsLinearsAndNumParametersItsParameters) {
  for (bool tied : {true, false}) {
    ModelConfig c = TinyGpt2Config();
    c.tie_word_embeddings = tied;
    Gpt2 model(c);
    std::vector<LinearModule> expected;
    for (const auto& item : model->named_modules("", /*include_self=*/false)) {
      if (auto* l = item.value()->as<adapters::LinearImpl>()) {
        expected.push_back({item.key(), l->in_features(), l->out_features(), l->bias.defined()});
      }
    }
    std::vector<LinearModule> listed = LinearModules(c);
    ASSERT_EQ(listed.size(), expected.size());
    for (size_t i = 0; i < listed.size(); ++i) {
      EXPECT_EQ(listed[i].name, expected[i].name);
      EXPECT_EQ(listed[i].in_features, expected[i].in_features) << listed[i].name;
      EXPECT_EQ(listed[i].out_features, expected[i].out_features) << listed[i].name;
      EXPECT_EQ(listed[i].bias, expected[i].bias) << listed[i].name;
    }
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    EXPECT_EQ(c.NumParameters(), n);
  }
  EXPECT_EQ(LinearModules(TinyGpt2Config())[0].name, "transformer.h.0.attn.c_attn");
}

TEST_F(Gpt2Test, WritesConv1DWeightsInOutAndNoTiedHead) {
  auto weights = *adapters::LoadTensors((*dir_ / "model.safetensors").string());
  EXPECT_EQ(weights.at("transformer.h.0.attn.c_attn.weight").sizes(),
            (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(weights.at("transformer.h.1.mlp.c_fc.weight").sizes(), (std::vector<int64_t>{64, 256}));
  EXPECT_EQ(weights.at("transformer.h.1.mlp.c_proj.weight").sizes(),
            (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(weights.count("lm_head.weight"), 0u);
  auto config = nlohmann::json::parse(std::ifstream(*dir_ / "config.json"));
  EXPECT_EQ(config["model_type"], "gpt2");
  EXPECT_EQ(config["n_embd"], 64);
  // Deterministic bytes.
  fs::path again = TempDir("again");
  ASSERT_TRUE(WriteTinyGpt2Model(again.string()).ok());
  std::ifstream a(*dir_ / "model.safetensors", std::ios::binary),
      b(again / "model.safetensors", std::ios::binary);
  EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b)));
}

TEST_F(Gpt2Test, LoadedWeightsAreTheCheckpointsWithConv1DTransposed) {
  Gpt2 model = Load(*dir_);
  auto weights = *adapters::LoadTensors((*dir_ / "model.safetensors").string());
  EXPECT_TRUE(torch::equal(model->transformer->h[0]->as<Gpt2BlockImpl>()->attn->c_attn->weight,
                           weights.at("transformer.h.0.attn.c_attn.weight").t()));
  EXPECT_TRUE(torch::equal(model->transformer->h[1]->as<Gpt2BlockImpl>()->ln_2->weight,
                           weights.at("transformer.h.1.ln_2.weight")));
  EXPECT_TRUE(torch::equal(model->transformer->wpe->weight, weights.at("transformer.wpe.weight")));
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model->forward(Ids(), {});
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 6, 512}));
  EXPECT_FALSE(torch::isnan(logits).any().item<bool>());
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST_F(Gpt2Test, ShardedBf16Fp16AndUnprefixedFoldersLoadToTheSameModel) {
  torch::NoGradGuard no_grad;
  torch::Tensor reference = Load(*dir_)->forward(Ids(), {});
  fs::path sharded = TempDir("sharded");
  ASSERT_TRUE(WriteTinyGpt2Model(sharded.string(), 3).ok());
  EXPECT_TRUE(fs::exists(sharded / "model.safetensors.index.json"));
  EXPECT_TRUE(torch::equal(Load(sharded)->forward(Ids(), {}), reference));
  for (const auto& [dtype, type] : std::vector<std::pair<std::string, torch::ScalarType>>{
           {"bfloat16", torch::kBFloat16}, {"float16", torch::kHalf}}) {
    fs::path half = TempDir(dtype);
    ASSERT_TRUE(WriteTinyGpt2Model(half.string(), 1, dtype).ok());
    Gpt2 rounded = Load(*dir_);
    for (auto& p : rounded->parameters()) p.copy_(p.to(type).to(torch::kFloat));
    EXPECT_TRUE(torch::equal(Load(half)->forward(Ids(), {}), rounded->forward(Ids(), {}))) << dtype;
  }
  // The original gpt2 checkpoints: GPT2Model's keys (no "transformer.") and mask buffers.
  auto weights = *adapters::LoadTensors((*dir_ / "model.safetensors").string());
  std::map<std::string, torch::Tensor> old;
  for (auto& [k, v] : weights) old[k.substr(std::string("transformer.").size())] = v;
  old["h.0.attn.bias"] = torch::ones({1, 1, 256, 256}).tril();
  old["h.0.attn.masked_bias"] = torch::tensor(-1e4);
  fs::path unprefixed = TempDir("unprefixed");
  fs::create_directories(unprefixed);
  fs::copy_file(*dir_ / "config.json", unprefixed / "config.json");
  ASSERT_TRUE(adapters::SaveTensors((unprefixed / "model.safetensors").string(), old).ok());
  EXPECT_TRUE(torch::equal(Load(unprefixed)->forward(Ids(), {}), reference));
}

TEST_F(Gpt2Test, RefusalsNameTheTensor) {
  auto weights = *adapters::LoadTensors((*dir_ / "model.safetensors").string());
  fs::path bad = TempDir("bad");
  fs::create_directories(bad);
  fs::copy_file(*dir_ / "config.json", bad / "config.json");
  auto save = [&](const std::map<std::string, torch::Tensor>& w) {
    ASSERT_TRUE(adapters::SaveTensors((bad / "model.safetensors").string(), w).ok());
  };
  auto missing = weights;
  missing.erase("transformer.h.1.mlp.c_fc.bias");
  save(missing);
  EXPECT_NE(
      LoadGpt2(bad.string()).status().message().find("no tensor 'transformer.h.1.mlp.c_fc.bias'"),
      std::string::npos);
  // A Linear-layout (out, in) weight where Conv1D's (in, out) belongs.
  auto linear_layout = weights;
  linear_layout["transformer.h.0.mlp.c_fc.weight"] =
      weights["transformer.h.0.mlp.c_fc.weight"].t().contiguous();
  save(linear_layout);
  auto st = LoadGpt2(bad.string()).status();
  EXPECT_NE(st.message().find("'transformer.h.0.mlp.c_fc.weight' has shape [256, 64]"),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("needs [64, 256] (a Conv1D weight, stored (in, out))"),
            std::string::npos)
      << st;
  auto extra = weights;
  extra["transformer.h.7.mlp.c_fc.bias"] = torch::ones({2});
  save(extra);
  EXPECT_NE(LoadGpt2(bad.string()).status().message().find("transformer.h.7.mlp.c_fc.bias"),
            std::string::npos);
  LoadOptions classify;
  classify.num_labels = 3;
  EXPECT_NE(LoadGpt2(dir_->string(), classify).status().message().find("causal LM only"),
            std::string::npos);
  EXPECT_NE(LoadLlama(dir_->string()).status().message().find("LoadGpt2"), std::string::npos);
}

TEST_F(Gpt2Test, RightPaddingLeavesTheRealTokensLogitsAlone) {
  Gpt2 model = Load(*dir_);
  model->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  torch::Tensor alone = model->forward(torch::tensor({{5, 17, 300, 42}}, torch::kLong), {});
  torch::Tensor padded = model->forward(torch::tensor({{5, 17, 300, 42, 0, 0}}, torch::kLong),
                                        torch::tensor({{1, 1, 1, 1, 0, 0}}, torch::kLong));
  EXPECT_TRUE(torch::allclose(padded.narrow(1, 0, 4), alone, 1e-12, 1e-12));
}

TEST_F(Gpt2Test, APackedRowEqualsItsRecordsAlone) {
  Gpt2 model = Load(*dir_);
  model->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  torch::Tensor a = torch::tensor({{5, 17, 300}}, torch::kLong);
  torch::Tensor b = torch::tensor({{42, 7, 99, 1, 2}}, torch::kLong);
  torch::Tensor row = torch::cat({a, b}, 1);
  torch::Tensor positions = torch::tensor({{0, 1, 2, 0, 1, 2, 3, 4}}, torch::kLong);
  torch::Tensor sequences = torch::tensor({{0, 0, 0, 1, 1, 1, 1, 1}}, torch::kLong);
  torch::Tensor packed = model->Hidden(row, {}, positions, sequences);
  EXPECT_TRUE(torch::allclose(packed.narrow(1, 0, 3), model->Hidden(a, {}), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(packed.narrow(1, 3, 5), model->Hidden(b, {}), 1e-12, 1e-12));
  // Without the packing ids the second record would see the first: the test can fail.
  EXPECT_FALSE(
      torch::allclose(model->Hidden(row, {}).narrow(1, 3, 5), model->Hidden(b, {}), 1e-6, 1e-6));
}

TEST_F(Gpt2Test, PositionsPastNPositionsAreRefused) {
  Gpt2 model = Load(*dir_);
  torch::NoGradGuard no_grad;
  try {
    model->forward(torch::zeros({1, 257}, torch::kLong), {});
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("past n_positions = 256"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace peftd::model
