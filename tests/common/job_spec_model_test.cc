// A spec against its model's config.json (issue 12: unknown modules and layers were accepted;
// issue 18 item 2: every entry must match, mixed lists work) and the module list of a config.
#include "common/job_spec_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/job_spec.h"

namespace peftd {
namespace {

using testing::HasSubstr;
using testing::StartsWith;

// Two layers, hidden 64, 4 heads / 2 KV heads of 16, intermediate 176, vocab 512, untied head.
model::ModelConfig TwoLayers() {
  model::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  return c;
}

model::ModelConfig Classifier() {
  model::ModelConfig c = TwoLayers();
  c.architecture = "LlamaForSequenceClassification";
  c.sequence_classification = true;
  c.num_labels = 3;
  c.id2label = {"neg", "neutral", "pos"};
  return c;
}

v1::JobSpec Spec() {
  v1::JobSpec s;
  s.set_base_model("tiny");
  s.set_method(v1::LORA);
  s.set_training_dataset_id("ds-1");
  return WithDefaults(s);
}

std::vector<std::string> Names(const SpecOnModel& r) {
  std::vector<std::string> out;
  for (const auto& m : r.adapted) out.push_back(m.name);
  return out;
}

TEST(LinearModules, ListsTheProjectionsAndTheHeadWithTheirShapes) {
  std::vector<model::LinearModule> m = model::LinearModules(TwoLayers());
  ASSERT_EQ(m.size(), 15u);
  EXPECT_EQ(m[0].name, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(m[1].out_features, 32);  // k_proj: 2 KV heads of 16
  EXPECT_EQ(m[3].in_features, 64);   // o_proj
  EXPECT_EQ(m[6].name, "model.layers.0.mlp.down_proj");
  EXPECT_EQ(m[6].in_features, 176);
  EXPECT_EQ(m[14].name, "lm_head");
  EXPECT_EQ(m[14].out_features, 512);
  model::ModelConfig tied = TwoLayers();
  tied.tie_word_embeddings = true;
  EXPECT_EQ(model::LinearModules(tied).size(), 14u);
  model::ModelConfig cls = model::ConfigForNumLabels(TwoLayers(), 5);
  EXPECT_EQ(cls.architecture, "LlamaForSequenceClassification");
  EXPECT_EQ(model::LinearModules(cls).back().name, "score");
  EXPECT_EQ(model::LinearModules(cls).back().out_features, 5);
}

TEST(ResolveSpecOnModel, DefaultsAndMixedListsResolve) {
  auto r = ResolveSpecOnModel(Spec(), TwoLayers());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{
                           "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                           "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  v1::JobSpec s = Spec();
  s.clear_target_modules();
  s.add_target_modules("o_proj");
  s.add_target_modules(R"(re:model\.layers\.1\.mlp\.(gate|up)_proj)");
  s.add_layers_to_transform(1);
  r = ResolveSpecOnModel(s, TwoLayers());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"model.layers.1.self_attn.o_proj",
                                                 "model.layers.1.mlp.gate_proj",
                                                 "model.layers.1.mlp.up_proj"}));
}

TEST(ResolveSpecOnModel, RefusesWhatTheModelCannotDo) {
  struct Case {
    std::function<void(v1::JobSpec&)> mutate;
    model::ModelConfig config;
    std::string message_start;
  };
  const Case cases[] = {
      {[](v1::JobSpec& s) {
         s.clear_target_modules();
         s.add_target_modules("no_such_proj");
       },
       TwoLayers(),
       "target_modules[0]: 'no_such_proj' matches no Linear module of the model; the model's "
       "Linear modules are model.layers.{0..1}.self_attn.q_proj, "},
      {[](v1::JobSpec& s) { s.add_target_modules("foo_proj"); }, TwoLayers(),
       "target_modules[2]: 'foo_proj' matches no Linear module"},
      {[](v1::JobSpec& s) { s.add_exclude_modules("re:.*\\.nothing"); }, TwoLayers(),
       "exclude_modules[0]: 're:.*\\.nothing' matches no Linear module"},
      {[](v1::JobSpec& s) { s.add_layers_to_transform(99); }, TwoLayers(),
       "layers_to_transform[0]: layer 99 is outside [0, 2): base_model 'tiny' has "
       "num_hidden_layers = 2"},
      {[](v1::JobSpec& s) {}, Classifier(),
       "task: base_model 'tiny' is a LlamaForSequenceClassification checkpoint (a score head of 3 "
       "classes): use task SEQ_CLS"},
      {[](v1::JobSpec& s) {
         s.set_task(v1::SEQ_CLS);
         s.set_num_labels(2);
       },
       Classifier(),
       "num_labels: base_model 'tiny' has a score head of 3 classes (config.json), "
       "the job asks for 2"},
      {[](v1::JobSpec& s) {
         s.set_task(v1::SEQ_CLS);
         s.set_num_labels(3);
         for (const char* n : {"neg", "pos", "neutral"}) s.add_label_names(n);
       },
       Classifier(), "label_names[1]: 'pos' differs from config.json id2label[1] = 'neutral'"},
      {[](v1::JobSpec& s) {
         s.set_method(v1::ADADHP);
         s.clear_lora();
         s.mutable_adadhp()->set_target_num(5);
         s.mutable_adadhp()->set_beta1(0.85f);
         s.mutable_adadhp()->set_beta2(0.85f);
         s.mutable_adadhp()->set_delta_t(10);
       },
       TwoLayers(), "adadhp.target_num: must be in [0, 4] (the adapted modules), got 5"},
  };
  for (const Case& c : cases) {
    v1::JobSpec s = Spec();
    c.mutate(s);
    ASSERT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
    auto r = ResolveSpecOnModel(s, c.config);
    ASSERT_FALSE(r.ok()) << c.message_start;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), StartsWith(c.message_start));
  }
}

TEST(ResolveSpecOnModel, ClassificationJobsGetAScoreHead) {
  v1::JobSpec s = Spec();
  s.set_task(v1::SEQ_CLS);
  s.set_num_labels(3);
  for (const char* n : {"neg", "neutral", "pos"}) s.add_label_names(n);
  s.add_target_modules("score");
  auto r = ResolveSpecOnModel(s, Classifier());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->adapted.back().name, "score");
  // A causal-LM checkpoint gets a fresh head of the job's classes, without lm_head.
  s.set_num_labels(4);
  s.clear_label_names();
  r = ResolveSpecOnModel(s, TwoLayers());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.num_labels, 4);
  EXPECT_EQ(r->adapted.back().out_features, 4);
  s.set_target_modules(2, "lm_head");
  EXPECT_THAT(std::string(ResolveSpecOnModel(s, TwoLayers()).status().message()),
              HasSubstr("target_modules[2]: 'lm_head' matches no Linear module"));
}

}  // namespace
}  // namespace peftd

namespace peftd {
namespace {

// GPT-2 small's shape, as ParseModelConfig reads its config.json.
model::ModelConfig Gpt2Small() {
  auto c = model::ParseModelConfig(R"({"architectures": ["GPT2LMHeadModel"],
      "model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12,
      "n_positions": 1024})");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(Gpt2Spec, ModulesDefaultTargetsAndLayersAreGpt2s) {
  const model::ModelConfig c = Gpt2Small();
  std::vector<model::LinearModule> m = model::LinearModules(c);
  ASSERT_EQ(m.size(), 48u);  // 4 Conv1D per block, the head tied to wte
  EXPECT_EQ(m[0].name, "transformer.h.0.attn.c_attn");
  EXPECT_EQ(m[0].out_features, 3 * 768);
  EXPECT_EQ(m[3].name, "transformer.h.0.mlp.c_proj");
  EXPECT_EQ(m[3].in_features, 3072);
  EXPECT_TRUE(m[3].bias);

  // A spec without target_modules gets PEFT's GPT-2 default; WithDefaults alone would say
  // q_proj, which GPT-2 does not have.
  v1::JobSpec given;
  given.set_base_model("gpt2");
  given.set_method(v1::LORA);
  given.set_training_dataset_id("ds-1");
  v1::JobSpec spec = WithDefaults(given);
  EXPECT_FALSE(ResolveSpecOnModel(spec, c).ok());
  ApplyModelDefaults(given, c, &spec);
  auto r = ResolveSpecOnModel(spec, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->adapted.size(), 12u);
  EXPECT_EQ(Names(*r)[11], "transformer.h.11.attn.c_attn");
  // Named targets are kept; c_proj selects both projections of a block, layers count blocks.
  v1::JobSpec named = given;
  named.add_target_modules("c_proj");
  named.add_layers_to_transform(2);
  v1::JobSpec spec2 = WithDefaults(named);
  ApplyModelDefaults(named, c, &spec2);
  r = ResolveSpecOnModel(spec2, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"transformer.h.2.attn.c_proj",
                                                 "transformer.h.2.mlp.c_proj"}));
  // A LLaMA model keeps q_proj, v_proj.
  v1::JobSpec llama = WithDefaults(given);
  ApplyModelDefaults(given, TwoLayers(), &llama);
  EXPECT_EQ(llama.target_modules_size(), 2);
  EXPECT_EQ(llama.target_modules(0), "q_proj");
}

TEST(Gpt2Spec, SeqClsIsRefusedNamingTheFieldAndExportMergedAccepted) {
  const model::ModelConfig c = Gpt2Small();
  v1::JobSpec given;
  given.set_base_model("gpt2");
  given.set_method(v1::LORA);
  given.set_training_dataset_id("ds-1");
  given.set_task(v1::SEQ_CLS);
  given.set_num_labels(2);
  v1::JobSpec spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  auto r = ResolveSpecOnModel(spec, c);
  EXPECT_THAT(std::string(r.status().message()), StartsWith("task: "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("use task CAUSAL_LM"));
  given.set_task(v1::CAUSAL_LM);
  given.set_num_labels(0);
  given.set_export_merged(true);
  spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  r = ResolveSpecOnModel(spec, c);
  EXPECT_TRUE(r.ok()) << r.status();
  // HUT folds into GPT-2's Conv1D biases.
  given.set_method(v1::HUT);
  spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  r = ResolveSpecOnModel(spec, c);
  EXPECT_TRUE(r.ok()) << r.status();
}

}  // namespace
}  // namespace peftd
