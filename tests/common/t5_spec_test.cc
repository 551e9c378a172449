// T5 (issue 14) on the server's side: config.json of t5-small (v1.0) and flan-t5 (v1.1) read into
// the common fields, bad fields named, the module list and PEFT's default targets q, v, the task
// SEQ_2_SEQ_LM (only on T5, and T5 only with it), packing and export_merged of HUT refused by name,
// max_target_len, and a memory estimate that knows T5.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/memory_estimate.h"
#include "common/model_config.h"
#include "common/model_modules.h"
#include "common/status.h"

namespace peftd {
namespace {

using testing::AllOf;
using testing::HasSubstr;
using testing::StartsWith;

// t5-small's config.json (transformers' T5Config fields as the hub has them).
constexpr char kT5Small[] = R"({"architectures": ["T5ForConditionalGeneration"],
  "d_ff": 2048, "d_kv": 64, "d_model": 512, "decoder_start_token_id": 0, "dropout_rate": 0.1,
  "eos_token_id": 1, "initializer_factor": 1.0, "is_encoder_decoder": true,
  "layer_norm_epsilon": 1e-06, "model_type": "t5", "n_positions": 512, "num_heads": 8,
  "num_layers": 6, "output_past": true, "pad_token_id": 0,
  "relative_attention_num_buckets": 32, "vocab_size": 32128})";

// flan-t5-base's: gated-gelu, untied head, num_decoder_layers given.
constexpr char kFlanT5Base[] = R"({"architectures": ["T5ForConditionalGeneration"],
  "d_ff": 2048, "d_kv": 64, "d_model": 768, "decoder_start_token_id": 0,
  "dense_act_fn": "gelu_new", "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
  "is_encoder_decoder": true, "is_gated_act": true, "layer_norm_epsilon": 1e-06,
  "model_type": "t5", "num_decoder_layers": 12, "num_heads": 12, "num_layers": 12,
  "pad_token_id": 0, "relative_attention_max_distance": 128,
  "relative_attention_num_buckets": 32, "tie_word_embeddings": false, "vocab_size": 32128})";

model::ModelConfig Parse(const char* text) {
  auto c = model::ParseModelConfig(text);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : model::ModelConfig{};
}

v1::JobSpec Given() {
  v1::JobSpec s;
  s.set_base_model("t5");
  s.set_method(v1::LORA);
  s.set_training_dataset_id("ds-1");
  s.set_task(v1::SEQ_2_SEQ_LM);
  return s;
}

absl::StatusOr<SpecOnModel> Resolve(const v1::JobSpec& given, const model::ModelConfig& c) {
  v1::JobSpec spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  return ResolveSpecOnModel(spec, c);
}

TEST(T5Config, T5SmallAndFlanT5ReadIntoTheCommonFields) {
  const model::ModelConfig small = Parse(kT5Small);
  EXPECT_TRUE(small.IsT5());
  EXPECT_EQ(small.hidden_size, 512);
  EXPECT_EQ(small.head_dim, 64);
  EXPECT_EQ(small.intermediate_size, 2048);
  EXPECT_EQ(small.num_hidden_layers, 6);
  EXPECT_EQ(small.num_decoder_layers, 6);  // num_decoder_layers defaults to num_layers
  EXPECT_EQ(small.relative_attention_max_distance, 128);
  EXPECT_FALSE(small.gated_feed_forward);
  EXPECT_EQ(small.activation_function, "relu");
  EXPECT_TRUE(small.tie_word_embeddings);
  EXPECT_EQ(small.pad_token_id, 0);
  EXPECT_EQ(small.eos_token_id, 1);
  // t5-small has 60.5M parameters (transformers' num_parameters, the tied embedding once).
  EXPECT_EQ(small.NumParameters(), 60506624);

  const model::ModelConfig flan = Parse(kFlanT5Base);
  EXPECT_TRUE(flan.gated_feed_forward);
  EXPECT_EQ(flan.activation_function, "gelu_new");
  EXPECT_FALSE(flan.tie_word_embeddings);
  EXPECT_EQ(flan.num_decoder_layers, 12);
  // flan-t5-base: 247.6M with its own lm_head.
  EXPECT_EQ(flan.NumParameters(), 247577856);

  // What make-tiny-model writes reads back the same.
  const model::ModelConfig again = Parse(model::ModelConfigJson(flan).c_str());
  EXPECT_EQ(again.NumParameters(), flan.NumParameters());
  EXPECT_TRUE(again.gated_feed_forward);
  EXPECT_EQ(again.activation_function, "gelu_new");
}

TEST(T5Config, BadFieldsAreNamed) {
  const std::string base = R"({"architectures": ["T5ForConditionalGeneration"], "d_ff": 64,
      "d_kv": 8, "d_model": 32, "num_heads": 4, "num_layers": 2, "vocab_size": 100)";
  auto with = [&](const std::string& extra) {
    return model::ParseModelConfig(base + (extra.empty() ? "" : ", " + extra) + "}");
  };
  EXPECT_TRUE(with("").ok());
  EXPECT_THAT(std::string(with(R"("feed_forward_proj": "gated-swish")").status().message()),
              HasSubstr("feed_forward_proj"));
  EXPECT_THAT(std::string(with(R"("d_kv": 0)").status().message()), HasSubstr("d_kv"));
  EXPECT_THAT(std::string(with(R"("num_decoder_layers": 0)").status().message()),
              HasSubstr("num_decoder_layers"));
  EXPECT_THAT(std::string(with(R"("relative_attention_num_buckets": 2)").status().message()),
              HasSubstr("relative_attention_num_buckets"));
  EXPECT_THAT(std::string(with(R"("relative_attention_max_distance": 3)").status().message()),
              HasSubstr("relative_attention_max_distance"));
  EXPECT_THAT(std::string(with(R"("num_heads": 0)").status().message()), HasSubstr("num_heads"));
  auto missing = model::ParseModelConfig(
      R"({"architectures": ["T5ForConditionalGeneration"], "d_model": 32, "vocab_size": 100})");
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("d_kv: missing"));
}

TEST(T5Spec, ModulesAndDefaultTargetsArePefts) {
  const model::ModelConfig c = Parse(kFlanT5Base);
  std::vector<model::LinearModule> m = model::LinearModules(c);
  // Encoder blocks: q, k, v, o, wi_0, wi_1, wo; decoder blocks: four more for cross-attention;
  // then lm_head (untied).
  ASSERT_EQ(m.size(), 12u * 7 + 12u * 11 + 1);
  EXPECT_EQ(m[0].name, "encoder.block.0.layer.0.SelfAttention.q");
  EXPECT_EQ(m[4].name, "encoder.block.0.layer.1.DenseReluDense.wi_0");
  EXPECT_EQ(m[6].name, "encoder.block.0.layer.1.DenseReluDense.wo");
  EXPECT_EQ(m[6].in_features, 2048);
  EXPECT_EQ(m[12 * 7 + 4].name, "decoder.block.0.layer.1.EncDecAttention.q");
  EXPECT_EQ(m.back().name, "lm_head");
  EXPECT_EQ(model::LinearModules(Parse(kT5Small)).size(), 6u * 6 + 6u * 10);  // wi, tied head
  EXPECT_EQ(model::SupportedTaskTypes("T5ForConditionalGeneration"),
            (std::vector<std::string>{"SEQ_2_SEQ_LM"}));

  auto r = Resolve(Given(), c);
  ASSERT_TRUE(r.ok()) << r.status();
  // q and v of every attention: 12 encoder self, 12 decoder self, 12 cross.
  EXPECT_EQ(r->adapted.size(), 2u * 36);
  // layers_to_transform counts encoder and decoder blocks each from 0.
  v1::JobSpec layer = Given();
  layer.add_layers_to_transform(11);
  layer.add_target_modules("EncDecAttention.o");
  r = Resolve(layer, c);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->adapted.size(), 1u);
  EXPECT_EQ(r->adapted[0].name, "decoder.block.11.layer.1.EncDecAttention.o");
  layer.set_layers_to_transform(0, 12);
  EXPECT_THAT(std::string(Resolve(layer, c).status().message()),
              StartsWith("layers_to_transform[0]: layer 12 is outside [0, 12)"));
}

TEST(T5Spec, TaskPackingAndExportMergedAreCheckedByName) {
  const model::ModelConfig t5 = Parse(kT5Small);
  v1::JobSpec causal = Given();
  causal.set_task(v1::CAUSAL_LM);
  EXPECT_THAT(std::string(Resolve(causal, t5).status().message()),
              AllOf(StartsWith("task: "), HasSubstr("use task SEQ_2_SEQ_LM")));
  v1::JobSpec cls = Given();
  cls.set_task(v1::SEQ_CLS);
  cls.set_num_labels(2);
  EXPECT_THAT(std::string(Resolve(cls, t5).status().message()), StartsWith("task: "));
  // SEQ_2_SEQ_LM on a decoder-only model.
  const model::ModelConfig gpt2 = Parse(R"({"architectures": ["GPT2LMHeadModel"],
      "vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64})");
  v1::JobSpec on_gpt2 = Given();
  on_gpt2.add_target_modules("c_attn");
  EXPECT_THAT(std::string(Resolve(on_gpt2, gpt2).status().message()),
              AllOf(StartsWith("task: "), HasSubstr("encoder-decoder")));

  v1::JobSpec packed = Given();
  packed.set_packing(true);
  EXPECT_THAT(std::string(Resolve(packed, t5).status().message()), StartsWith("packing: "));
  // export_merged: every mergeable method but HUT, whose merge adds biases T5 cannot declare.
  v1::JobSpec merged = Given();
  merged.set_export_merged(true);
  EXPECT_TRUE(Resolve(merged, t5).ok()) << Resolve(merged, t5).status();
  merged.set_method(v1::HUT);
  EXPECT_THAT(std::string(Resolve(merged, t5).status().message()),
              AllOf(StartsWith("export_merged: "), HasSubstr("HUT"), HasSubstr("bias")));

  // max_target_len: 128 by default for SEQ_2_SEQ_LM, refused on another task.
  EXPECT_EQ(WithDefaults(Given()).max_target_len(), 128);
  EXPECT_FALSE(WithDefaults(Given()).packing());
  v1::JobSpec target_on_causal = WithDefaults(causal);
  target_on_causal.set_max_target_len(64);
  EXPECT_THAT(std::string(ValidateJobSpec(target_on_causal).message()),
              StartsWith("max_target_len: "));
  v1::JobSpec too_long = WithDefaults(Given());
  too_long.set_max_target_len(-1);
  EXPECT_THAT(std::string(ValidateJobSpec(too_long).message()), StartsWith("max_target_len"));
}

TEST(T5Spec, MemoryEstimateGrowsWithInputAndTargetLengths) {
  const model::ModelConfig c = Parse(kFlanT5Base);
  v1::JobSpec spec = WithDefaults(Given());
  ApplyModelDefaults(Given(), c, &spec);
  auto r = ResolveSpecOnModel(spec, c);
  ASSERT_TRUE(r.ok()) << r.status();
  const MemoryEstimate base = EstimatePeakMemory(spec, *r, 0);
  EXPECT_GE(base.weights, c.NumParameters() * 4);
  EXPECT_GT(base.activations, 0);
  EXPECT_GT(base.logits, 0);
  v1::JobSpec longer_input = spec;
  longer_input.set_max_seq_len(2 * spec.max_seq_len());
  EXPECT_GT(EstimatePeakMemory(longer_input, *r, 0).activations, base.activations);
  v1::JobSpec longer_target = spec;
  longer_target.set_max_target_len(4 * spec.max_target_len());
  EXPECT_GT(EstimatePeakMemory(longer_target, *r, 0).activations, base.activations);
  EXPECT_GT(EstimatePeakMemory(longer_target, *r, 0).logits, base.logits);
}

}  // namespace
}  // namespace peftd
