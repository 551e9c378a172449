// RoBERTa's config.json (issue 14): the fields of roberta-base's own config.json, refusals that
// name the field, its Linear modules and PEFT's default targets, SEQ_CLS as its only task, and
// the spec checks and memory estimate of a job on it.
#include "common/model_config_encoders.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/memory_estimate.h"
#include "common/model_modules.h"

namespace peftd {
namespace {

using testing::HasSubstr;
using testing::StartsWith;

// roberta-base's config.json as published (RobertaForMaskedLM).
constexpr char kRobertaBase[] = R"({"architectures": ["RobertaForMaskedLM"],
  "attention_probs_dropout_prob": 0.1, "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
  "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 514,
  "model_type": "roberta", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
  "type_vocab_size": 1, "vocab_size": 50265})";

model::ModelConfig RobertaBase() {
  auto c = model::ParseModelConfig(kRobertaBase);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// kRobertaBase with `field` set to `value` (JSON text), replaced or added.
std::string With(const std::string& field, const std::string& value) {
  std::string text = kRobertaBase;
  const size_t at = text.find("\"" + field + "\"");
  if (at == std::string::npos)
    return text.substr(0, text.size() - 1) + ", \"" + field + "\": " + value + "}";
  const size_t colon = text.find(':', at);
  const size_t end = text.find_first_of(",}", colon);
  return text.substr(0, colon + 1) + " " + value + text.substr(end);
}

v1::JobSpec Given(v1::TaskType task) {
  v1::JobSpec s;
  s.set_base_model("roberta-base");
  s.set_method(v1::LORA);
  s.set_training_dataset_id("ds-1");
  s.set_task(task);
  if (task == v1::SEQ_CLS) s.set_num_labels(2);
  return s;
}

absl::StatusOr<SpecOnModel> Resolve(const v1::JobSpec& given, const model::ModelConfig& c) {
  v1::JobSpec spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  return ResolveSpecOnModel(spec, c);
}

TEST(RobertaConfig, ReadsRobertaBasesConfig) {
  const model::ModelConfig c = RobertaBase();
  EXPECT_TRUE(c.IsRoberta());
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.type_vocab_size, 1);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.max_position_embeddings, 514);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(c.activation_function, "gelu");
  EXPECT_FALSE(c.sequence_classification);
  // RobertaModel's 124,645,632 parameters less its pooler (768 x 768 + 768), which the
  // classifier does not use.
  EXPECT_EQ(c.NumParameters(), 124645632 - 590592);
  // The classifier of a SEQ_CLS job: dense (768 x 768 + 768) and out_proj (768 x 2 + 2).
  EXPECT_EQ(model::ConfigForNumLabels(c, 2).NumParameters(),
            124645632 - 590592 + 768 * 768 + 768 + 768 * 2 + 2);
  EXPECT_EQ(model::ConfigForNumLabels(c, 2).architecture, "RobertaForSequenceClassification");
  // The text written back parses to the same model.
  auto again = model::ParseModelConfig(model::ModelConfigJson(model::ConfigForNumLabels(c, 3)));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->num_labels, 3);
  EXPECT_TRUE(again->sequence_classification);
  EXPECT_EQ(again->NumParameters(), model::ConfigForNumLabels(c, 3).NumParameters());
}

TEST(RobertaConfig, ASequenceClassificationCheckpointKeepsItsLabels) {
  auto c = model::ParseModelConfig(With("architectures", R"(["RobertaForSequenceClassification"])")
                                       .insert(1, R"("id2label": {"0": "neg", "1": "pos"}, )"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->sequence_classification);
  EXPECT_EQ(c->num_labels, 2);
  EXPECT_EQ(c->id2label, (std::vector<std::string>{"neg", "pos"}));
}

TEST(RobertaConfig, RefusesWhatChangesTheMathNamingTheField) {
  const struct {
    std::string field, value;
  } cases[] = {{"position_embedding_type", R"("relative_key")"},
               {"is_decoder", "true"},
               {"add_cross_attention", "true"},
               {"problem_type", R"("multi_label_classification")"},
               {"hidden_act", R"("relu")"},
               {"num_attention_heads", "7"},
               {"max_position_embeddings", "2"},
               {"layer_norm_eps", "0"},
               {"type_vocab_size", "0"}};
  for (const auto& k : cases) {
    auto c = model::ParseModelConfig(With(k.field, k.value));
    ASSERT_FALSE(c.ok()) << k.field;
    EXPECT_THAT(std::string(c.status().message()), StartsWith("config.json: " + k.field))
        << c.status();
  }
  EXPECT_THAT(
      std::string(model::ParseModelConfig(With("pad_token_id", "60000")).status().message()),
      StartsWith("config.json: pad_token_id"));
}

TEST(RobertaModules, ListsTheEncodersLinearsAndPeftsDefaults) {
  const model::ModelConfig c = RobertaBase();
  std::vector<model::LinearModule> m = model::LinearModules(model::ConfigForNumLabels(c, 2));
  ASSERT_EQ(m.size(), 72u);  // 6 per layer; the classifier trains whole and is no target
  EXPECT_EQ(m[0].name, "roberta.encoder.layer.0.attention.self.query");
  EXPECT_EQ(m[3].name, "roberta.encoder.layer.0.attention.output.dense");
  EXPECT_EQ(m[4].name, "roberta.encoder.layer.0.intermediate.dense");
  EXPECT_EQ(m[4].out_features, 3072);
  EXPECT_EQ(m[5].name, "roberta.encoder.layer.0.output.dense");
  EXPECT_EQ(m[5].in_features, 3072);
  EXPECT_TRUE(m[5].bias);
  EXPECT_EQ(model::DefaultTargetModules(c), (std::vector<std::string>{"query", "value"}));
  for (const char* a : {"RobertaForSequenceClassification", "RobertaForMaskedLM", "RobertaModel"}) {
    EXPECT_EQ(model::SupportedTaskTypes(a), (std::vector<std::string>{"SEQ_CLS"})) << a;
  }
}

TEST(RobertaSpec, DefaultTargetsAreQueryAndValueAndOutputDenseMatchesBoth) {
  const model::ModelConfig c = RobertaBase();
  auto r = Resolve(Given(v1::SEQ_CLS), c);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->adapted.size(), 24u);
  EXPECT_EQ(r->adapted[1].name, "roberta.encoder.layer.0.attention.self.value");
  EXPECT_TRUE(r->config.sequence_classification);
  v1::JobSpec named = Given(v1::SEQ_CLS);
  named.add_target_modules("output.dense");
  named.add_layers_to_transform(3);
  r = Resolve(named, c);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->adapted.size(), 2u);
  EXPECT_EQ(r->adapted[0].name, "roberta.encoder.layer.3.attention.output.dense");
  EXPECT_EQ(r->adapted[1].name, "roberta.encoder.layer.3.output.dense");
}

TEST(RobertaSpec, CausalLmAndExportMergedAreRefusedNamingTheField) {
  const model::ModelConfig c = RobertaBase();
  auto r = Resolve(Given(v1::CAUSAL_LM), c);
  EXPECT_THAT(std::string(r.status().message()), StartsWith("task: "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("use task SEQ_CLS"));
  v1::JobSpec merged = Given(v1::SEQ_CLS);
  merged.set_export_merged(true);
  merged.set_method(v1::HUT);  // folds into RoBERTa's biases
  EXPECT_TRUE(Resolve(merged, c).ok()) << Resolve(merged, c).status();
  // A classifier checkpoint of 2 classes refuses a job of 3, naming num_labels and the head.
  auto classifier =
      model::ParseModelConfig(With("architectures", R"(["RobertaForSequenceClassification"])"));
  ASSERT_TRUE(classifier.ok());
  v1::JobSpec three = Given(v1::SEQ_CLS);
  three.set_num_labels(3);
  r = Resolve(three, *classifier);
  EXPECT_THAT(std::string(r.status().message()), StartsWith("num_labels: "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("classifier head of 2 classes"));
}

TEST(RobertaSpec, MemoryEstimateCountsTheHeadAndTheAdaptedModules) {
  const model::ModelConfig c = RobertaBase();
  v1::JobSpec given = Given(v1::SEQ_CLS);
  given.set_batch_size(8);
  given.set_max_seq_len(128);
  v1::JobSpec spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  auto r = ResolveSpecOnModel(spec, c);
  ASSERT_TRUE(r.ok()) << r.status();
  const MemoryEstimate e = EstimatePeakMemory(spec, *r, 0);
  const int64_t rank = spec.lora().r();
  // LoRA on query and value of 12 layers plus the whole classifier, with gradients and AdamW.
  const int64_t trainable = 24 * rank * (768 + 768) + (768 + 1) * (768 + 2);
  EXPECT_EQ(e.adapter, trainable * 4 * 5);
  EXPECT_EQ(e.weights, (124645632 - 590592 + 768 * 768 + 768 + 768 * 2 + 2) * int64_t{4});
  // Adapting the MLP's dense layers keeps their inputs too.
  v1::JobSpec more = spec;
  more.add_target_modules("intermediate.dense");
  auto r2 = ResolveSpecOnModel(more, c);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_GT(EstimatePeakMemory(more, *r2, 0).activations, e.activations);
}

}  // namespace
}  // namespace peftd
