#include "common/model_config.h"

#include <gtest/gtest.h>

#include "worker/model/llama.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

TEST(ModelConfig, RoundTripsAndCountsParameters) {
  ModelConfig c = TinyConfig();
  auto back = ParseModelConfig(ModelConfigJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->num_key_value_heads, 2);
  EXPECT_EQ(back->head_dim, 16);
  EXPECT_EQ(back->eos_token_id, 510);
  // embed 512·64 + 4·(q 64·64 + k,v 2·64·32 + o 64·64 + mlp 3·64·176 + norms 2·64) + norm 64 + head
  // 512·64
  EXPECT_EQ(c.NumParameters(),
            512 * 64 + 4 * (4096 + 4096 + 4096 + 3 * 64 * 176 + 128) + 64 + 512 * 64);
  const int64_t n = BenchConfig100M().NumParameters();
  EXPECT_GT(n, 90'000'000);
  EXPECT_LT(n, 130'000'000);
}

TEST(ModelConfig, ReadsRealConfigFieldsOfTheFamily) {
  // Qwen2-style: q/k/v bias by model type; Llama 3: a list of EOS ids and llama3 RoPE scaling.
  auto qwen = ParseModelConfig(R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "rope_theta": 1000000.0,
    "tie_word_embeddings": true, "sliding_window": 32768})");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_TRUE(qwen->attention_bias);
  EXPECT_TRUE(qwen->tie_word_embeddings);
  EXPECT_EQ(qwen->head_dim, 64);
  auto llama3 = ParseModelConfig(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 128256,
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "eos_token_id": [128001, 128008, 128009], "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_EQ(llama3->eos_token_id, 128001);
  ASSERT_TRUE(llama3->llama3_rope.has_value());
  EXPECT_EQ(llama3->llama3_rope->factor, 32.0);
}

// HF's LlamaAttention gives o_proj the bias of attention_bias, and LlamaMLP its projections the
// bias of mlp_bias; Qwen2 has q/k/v biases only. What a merged HUT export relies on.
TEST(ModelConfig, LlamaBiasFlagsCoverOProjAndTheMlp) {
  ModelConfig c = TinyConfig();
  c.attention_bias = true;
  c.mlp_bias = true;
  auto back = ParseModelConfig(ModelConfigJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->attention_bias);
  EXPECT_TRUE(back->o_proj_bias);
  EXPECT_TRUE(back->mlp_bias);
  Llama model(*back);
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  EXPECT_EQ(back->NumParameters(), n);
  for (const char* name :
       {"model.layers.0.self_attn.o_proj.bias", "model.layers.3.mlp.up_proj.bias",
        "model.layers.1.mlp.down_proj.bias"}) {
    EXPECT_NE(model->named_parameters().find(name), nullptr) << name;
  }
  auto qwen = ParseModelConfig(R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 64,
    "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 4,
    "mlp_bias": true})");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_TRUE(qwen->attention_bias);
  EXPECT_FALSE(qwen->o_proj_bias);
  EXPECT_FALSE(qwen->mlp_bias);
}

TEST(ModelConfig, RefusalsNameTheField) {
  auto err = [](const std::string& text) {
    return std::string(ParseModelConfig(text).status().message());
  };
  EXPECT_NE(err("[]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(err(R"({"architectures": ["BertModel"]})").find("'BertModel' is not supported"),
            std::string::npos);
  EXPECT_NE(err(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 8})")
                .find("hidden_size: missing"),
            std::string::npos);
  const std::string base =
      R"("architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1)";
  EXPECT_NE(err("{" + base + R"(, "num_attention_heads": 4, "num_key_value_heads": 3})")
                .find("num_key_value_heads"),
            std::string::npos);
  EXPECT_NE(err("{" + base + R"(, "num_attention_heads": "four"})")
                .find("num_attention_heads: has the wrong type"),
            std::string::npos);
  EXPECT_NE(
      err("{" + base +
          R"(, "num_attention_heads": 4, "rope_scaling": {"rope_type": "yarn", "factor": 2}})")
          .find("rope_scaling"),
      std::string::npos);
}

// Inputs the config fuzzer (fuzz/fuzz_model_config.cc) reaches: each was undefined behaviour
// (float-to-int overflow, INT64_MIN % -1, NumParameters() overflow) before it was refused.
TEST(ModelConfig, RefusesNumbersThatWouldOverflow) {
  const std::string base =
      R"("architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1)";
  auto err = [&](const std::string& fields) {
    auto c = ParseModelConfig("{" + base + ", " + fields + "}");
    return c.ok() ? std::string("accepted") : std::string(c.status().message());
  };
  EXPECT_EQ(err(R"("vocab_size": 1e30, "num_attention_heads": 4)"),
            "config.json: vocab_size: has the wrong type (expected an integer)");
  EXPECT_EQ(err(R"("vocab_size": 8, "num_attention_heads": 9223372036854775808,)"
                R"( "num_key_value_heads": 18446744073709551615)"),
            "config.json: num_attention_heads: 9223372036854775808 is out of range");
  EXPECT_EQ(err(R"("vocab_size": 2000000000, "num_attention_heads": 4)"),
            "config.json: vocab_size: 2000000000 is over the limit of 16777216");
  EXPECT_EQ(err(R"("vocab_size": 8, "num_attention_heads": 4, "head_dim": 8192)"),
            "config.json: head_dim: must be even, >= 2 (RoPE rotates pairs) and <= 4096");
  // These threw out of the parser (a crash of the server listing models).
  EXPECT_EQ(err(R"("vocab_size": 8, "num_attention_heads": 4, "rope_scaling": 2)"),
            "config.json: rope_scaling: must be an object");
  EXPECT_EQ(err(R"("vocab_size": 8, "num_attention_heads": 4, "rope_scaling": {"type": 1})"),
            "config.json: rope_scaling: type must be a string");
  auto biggest = ParseModelConfig(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 16777216,
      "hidden_size": 131072, "intermediate_size": 1048576, "num_hidden_layers": 4096,
      "num_attention_heads": 4096, "head_dim": 4096})");
  ASSERT_TRUE(biggest.ok()) << biggest.status();
  EXPECT_GT(biggest->NumParameters(), 0);
}

}  // namespace
}  // namespace peftd::model
