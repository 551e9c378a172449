// DeBERTa-v3's config.json (issue 14): the fields of microsoft/deberta-v3-base's own config.json
// (no architectures, pos_att_type "p2c|c2p", max_relative_positions −1), refusals that name the
// field for what is not implemented, its Linear modules and PEFT's default targets, SEQ_CLS as its
// only task, and the spec checks and memory estimate of a job on it.
#include "common/model_config_deberta.h"

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

// microsoft/deberta-v3-base's config.json as published.
constexpr char kDebertaV3Base[] = R"({"model_type": "deberta-v2",
  "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
  "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
  "max_position_embeddings": 512, "relative_attention": true, "position_buckets": 256,
  "norm_rel_ebd": "layer_norm", "share_att_key": true, "pos_att_type": "p2c|c2p",
  "layer_norm_eps": 1e-7, "max_relative_positions": -1, "position_biased_input": false,
  "num_attention_heads": 12, "num_hidden_layers": 12, "type_vocab_size": 0, "vocab_size": 128100})";

model::ModelConfig V3Base() {
  auto c = model::ParseModelConfig(kDebertaV3Base);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// kDebertaV3Base with `field` set to `value` (JSON text), replaced or added.
std::string With(const std::string& field, const std::string& value) {
  std::string text = kDebertaV3Base;
  const size_t at = text.find("\"" + field + "\"");
  if (at == std::string::npos)
    return text.substr(0, text.size() - 1) + ", \"" + field + "\": " + value + "}";
  const size_t colon = text.find(':', at);
  const size_t end = text.find_first_of(",}", colon);
  return text.substr(0, colon + 1) + " " + value + text.substr(end);
}

v1::JobSpec Given(v1::TaskType task) {
  v1::JobSpec s;
  s.set_base_model("deberta-v3-base");
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

TEST(DebertaConfig, ReadsDebertaV3BasesConfig) {
  const model::ModelConfig c = V3Base();
  EXPECT_TRUE(c.IsDebertaV2());
  EXPECT_EQ(c.architecture, "DebertaV2Model");
  EXPECT_FALSE(c.sequence_classification);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.relative_attention);
  EXPECT_EQ(c.max_relative_positions, 512);  // −1: max_position_embeddings
  EXPECT_EQ(c.position_buckets, 256);
  EXPECT_TRUE(c.norm_rel_ebd_layer_norm);
  EXPECT_TRUE(c.pos_att_c2p);
  EXPECT_TRUE(c.pos_att_p2c);
  EXPECT_FALSE(c.position_biased_input);
  EXPECT_EQ(c.type_vocab_size, 0);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.pooler_hidden_act, "gelu");
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-7);
  EXPECT_EQ(model::DebertaV2RelEmbeddingRows(c), 512);
  // DebertaV2Model of deberta-v3-base: 183,831,552 parameters.
  EXPECT_EQ(c.NumParameters(), 183831552);
  // The list form of pos_att_type and a classifier checkpoint read the same.
  auto listed = model::ParseModelConfig(With("pos_att_type", R"(["p2c", "c2p"])"));
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->pos_att_c2p && listed->pos_att_p2c);
  auto cls =
      model::ParseModelConfig(With("architectures", R"(["DebertaV2ForSequenceClassification"])"));
  ASSERT_TRUE(cls.ok()) << cls.status();
  EXPECT_TRUE(cls->sequence_classification);
  EXPECT_EQ(cls->num_labels, 2);
  // config.json written back reads the same.
  auto again = model::ParseModelConfig(model::ModelConfigJson(*cls));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->NumParameters(), cls->NumParameters());
  EXPECT_EQ(again->max_relative_positions, 512);
}

TEST(DebertaConfig, RefusesWhatIsNotImplementedNamingTheField) {
  const struct {
    std::string field, value;
  } cases[] = {{"share_att_key", "false"},
               {"pos_att_type", R"("p2c|c2p|p2p")"},
               {"pos_att_type", "7"},
               {"conv_kernel_size", "3"},
               {"attention_head_size", "32"},
               {"embedding_size", "128"},
               {"pooler_hidden_size", "1024"},
               {"norm_rel_ebd", R"("batch_norm")"},
               {"hidden_act", R"("relu")"},
               {"pooler_hidden_act", R"("swish")"},
               {"problem_type", R"("regression")"},
               {"num_attention_heads", "7"},
               {"type_vocab_size", "-1"},
               {"layer_norm_eps", "0"},
               {"position_buckets", "1024"}};
  for (const auto& k : cases) {
    auto c = model::ParseModelConfig(With(k.field, k.value));
    ASSERT_FALSE(c.ok()) << k.field;
    EXPECT_THAT(std::string(c.status().message()), StartsWith("config.json: " + k.field))
        << c.status();
  }
  EXPECT_THAT(
      std::string(model::ParseModelConfig(With("pad_token_id", "200000")).status().message()),
      StartsWith("config.json: pad_token_id"));
}

TEST(DebertaModules, ListsTheEncodersLinearsAndPeftsDefaults) {
  const model::ModelConfig c = V3Base();
  std::vector<model::LinearModule> m = model::LinearModules(model::ConfigForNumLabels(c, 2));
  ASSERT_EQ(m.size(), 72u);  // 6 per layer; pooler and classifier are no targets
  EXPECT_EQ(m[0].name, "deberta.encoder.layer.0.attention.self.query_proj");
  EXPECT_EQ(m[1].name, "deberta.encoder.layer.0.attention.self.key_proj");
  EXPECT_EQ(m[3].name, "deberta.encoder.layer.0.attention.output.dense");
  EXPECT_EQ(m[4].name, "deberta.encoder.layer.0.intermediate.dense");
  EXPECT_EQ(m[5].name, "deberta.encoder.layer.0.output.dense");
  EXPECT_EQ(m[5].in_features, 3072);
  EXPECT_TRUE(m[5].bias);
  EXPECT_EQ(model::DefaultTargetModules(c), (std::vector<std::string>{"query_proj", "value_proj"}));
  for (const char* a :
       {"DebertaV2ForSequenceClassification", "DebertaV2ForMaskedLM", "DebertaV2Model"}) {
    EXPECT_EQ(model::SupportedTaskTypes(a), (std::vector<std::string>{"SEQ_CLS"})) << a;
  }
}

TEST(DebertaSpec, DefaultTargetsAreQueryProjAndValueProj) {
  auto r = Resolve(Given(v1::SEQ_CLS), V3Base());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->adapted.size(), 24u);
  EXPECT_EQ(r->adapted[0].name, "deberta.encoder.layer.0.attention.self.query_proj");
  EXPECT_EQ(r->adapted[1].name, "deberta.encoder.layer.0.attention.self.value_proj");
  EXPECT_EQ(r->config.architecture, "DebertaV2ForSequenceClassification");
}

TEST(DebertaSpec, CausalLmAndSeq2SeqAreRefusedNamingTheField) {
  const model::ModelConfig c = V3Base();
  for (v1::TaskType task : {v1::CAUSAL_LM, v1::SEQ_2_SEQ_LM}) {
    auto r = Resolve(Given(task), c);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(std::string(r.status().message()), StartsWith("task: "));
  }
  EXPECT_THAT(std::string(Resolve(Given(v1::CAUSAL_LM), c).status().message()),
              HasSubstr("use task SEQ_CLS"));
  // A classifier checkpoint of 2 classes refuses a job of 3, naming num_labels and the head.
  auto classifier =
      model::ParseModelConfig(With("architectures", R"(["DebertaV2ForSequenceClassification"])"));
  ASSERT_TRUE(classifier.ok());
  v1::JobSpec three = Given(v1::SEQ_CLS);
  three.set_num_labels(3);
  auto r = Resolve(three, *classifier);
  EXPECT_THAT(std::string(r.status().message()), StartsWith("num_labels: "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("classifier head of 2 classes"));
}

// The merged export is written for DeBERTa as for RoBERTa: every method, HUT included (its merged
// bias folds into the biases every DeBERTa Linear has).
TEST(DebertaSpec, ExportMergedIsAcceptedForEveryMethod) {
  for (v1::Method method : {v1::LORA, v1::DORA, v1::ADALORA, v1::HUT, v1::ADADHP}) {
    v1::JobSpec merged = Given(v1::SEQ_CLS);
    merged.set_method(method);
    merged.set_export_merged(true);
    auto r = Resolve(merged, V3Base());
    EXPECT_TRUE(r.ok()) << v1::Method_Name(method) << ": " << r.status();
  }
}

TEST(DebertaSpec, MemoryEstimateCountsTheClassifierAndTheDisentangledAttention) {
  const model::ModelConfig c = V3Base();
  v1::JobSpec given = Given(v1::SEQ_CLS);
  given.set_batch_size(8);
  given.set_max_seq_len(128);
  v1::JobSpec spec = WithDefaults(given);
  ApplyModelDefaults(given, c, &spec);
  auto r = ResolveSpecOnModel(spec, c);
  ASSERT_TRUE(r.ok()) << r.status();
  const MemoryEstimate e = EstimatePeakMemory(spec, *r, 0);
  const int64_t rank = spec.lora().r();
  // LoRA on query_proj and value_proj of 12 layers plus the classifier (the pooler is frozen),
  // with gradients and AdamW.
  const int64_t trainable = 24 * rank * (768 + 768) + (768 + 1) * 2;
  EXPECT_EQ(e.adapter, trainable * 4 * 5);
  EXPECT_EQ(e.weights, (183831552 + 768 * 768 + 768 + 768 * 2 + 2) * int64_t{4});
  // The relative attention's tensors count: the same shapes without it need less.
  model::ModelConfig plain = c;
  plain.relative_attention = false;
  auto r2 = ResolveSpecOnModel(spec, plain);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_GT(e.activations, EstimatePeakMemory(spec, *r2, 0).activations);
}

}  // namespace
}  // namespace peftd
