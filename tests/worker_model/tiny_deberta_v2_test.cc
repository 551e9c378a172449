// make-tiny-model --arch deberta-v2: the folder loads as DeBERTa-v3 (F32, BF16, F16, sharded), and
// its spm.model follows DeBERTa-v3's conventions through the real loaders: [PAD] = 0, [CLS] = 1,
// [SEP] = 2, [UNK] = 3, [MASK] last; classification records as [CLS] A [SEP] and pairs as
// [CLS] A [SEP] B [SEP] (DebertaV2Tokenizer's build_inputs_with_special_tokens), the text in
// between as SentencePiece "▁" pieces; a published v3 folder's config.json (model_type only, no
// architectures, pos_att_type "p2c|c2p") and its masked-LM checkpoint load with a new pooler and
// classifier; and the server's module list equals the modules the worker builds.
#include "worker/model/tiny_deberta_v2.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/model_modules.h"
#include "worker/data/dataset.h"
#include "worker/data/tokenizer.h"
#include "worker/model/checkpoint_writer.h"
#include "worker/model/deberta_v2_loader.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

class TinyDebertaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_tiny_deberta_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

std::vector<int64_t> Concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST_F(TinyDebertaTest, TokenizerUsesDebertaV3sSpecialsAndTemplates) {
  ASSERT_TRUE(WriteTinyDebertaV2Model((dir_ / "m").string()).ok());
  auto tok = data::LoadTokenizer((dir_ / "m").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const data::SpecialTokens& s = (*tok)->special();
  EXPECT_EQ(s.pad_id, 0);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_TRUE(s.add_bos);
  EXPECT_TRUE(s.add_eos);
  EXPECT_EQ((*tok)->TokenToId("[UNK]").value_or(-1), 3);
  EXPECT_EQ((*tok)->TokenToId("[MASK]").value_or(-1), 511);
  EXPECT_EQ((*tok)->VocabSize(), 512);
  // "▁the" is no piece: "▁t" then "he"; "▁cat": "▁c", "at".
  const std::vector<int64_t> a = (*tok)->Encode("the cat"), b = (*tok)->Encode("sat");
  EXPECT_EQ(a, (std::vector<int64_t>{*(*tok)->TokenToId("\xe2\x96\x81t"), *(*tok)->TokenToId("he"),
                                     *(*tok)->TokenToId("\xe2\x96\x81"
                                                        "c"),
                                     *(*tok)->TokenToId("at")}));
  EXPECT_EQ((*tok)->Decode(a), "the cat");
  // Special tokens written in the text are single ids.
  EXPECT_EQ((*tok)->Encode("[MASK]"), std::vector<int64_t>{511});

  data::DatasetOptions options;
  options.task = data::Task::kSequenceClassification;
  options.num_labels = 2;
  auto single = data::LoadDatasetFromBytes(R"({"text": "the cat", "label": 1})", "train.jsonl",
                                           **tok, options);
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_EQ(single->examples.size(), 1u);
  EXPECT_EQ(single->examples[0].input_ids, Concat({{1}, a, {2}}));
  EXPECT_EQ(single->examples[0].class_label, 1);
  auto pair = data::LoadDatasetFromBytes(R"({"text": "the cat", "text_pair": "sat", "label": 0})",
                                         "pairs.jsonl", **tok, options);
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_EQ(pair->examples.size(), 1u);
  EXPECT_EQ(pair->examples[0].input_ids, Concat({{1}, a, {2}, b, {2}}));
}

// deberta-v3-base's own tokenizer_config.json names no special token and no class: spm.model
// alone selects DebertaV2Tokenizer's template and its default [CLS], [SEP], [PAD].
TEST_F(TinyDebertaTest, APublishedV3TokenizerConfigKeepsTheTemplate) {
  ASSERT_TRUE(WriteTinyDebertaV2Model((dir_ / "m").string()).ok());
  std::ofstream(dir_ / "m" / "tokenizer_config.json")
      << R"({"do_lower_case": false, "vocab_type": "spm"})";
  auto tok = data::LoadTokenizer((dir_ / "m").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const data::SpecialTokens& s = (*tok)->special();
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_EQ(s.pad_id, 0);
  EXPECT_TRUE(s.add_bos && s.add_eos);
  ASSERT_TRUE(s.pair_middle.has_value());
  EXPECT_EQ(*s.pair_middle, std::vector<int64_t>{2});
  // A cls_token that is no piece is refused naming the field.
  std::ofstream(dir_ / "m" / "tokenizer_config.json") << R"({"cls_token": "<cls>"})";
  auto bad = data::LoadTokenizer((dir_ / "m").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), testing::HasSubstr("cls_token"));
}

TEST_F(TinyDebertaTest, LoadsInEveryStoredDtypeAndFromShards) {
  auto reference = [&]() {
    EXPECT_TRUE(WriteTinyDebertaV2Model((dir_ / "f32").string()).ok());
    auto m = LoadDebertaV2((dir_ / "f32").string());
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }();
  torch::Tensor ids = torch::tensor({{1, 17, 300, 42, 2}}, torch::kLong);
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = reference->forward(ids, {});
  for (const auto& [dtype, shards, tolerance] : std::vector<std::tuple<std::string, int, double>>{
           {"float32", 3, 0.0}, {"bfloat16", 1, 0.5}, {"float16", 2, 0.05}}) {
    SCOPED_TRACE(dtype);
    const fs::path d = dir_ / (dtype + std::to_string(shards));
    ASSERT_TRUE(WriteTinyDebertaV2Model(d.string(), shards, dtype).ok());
    EXPECT_EQ(fs::exists(d / "model.safetensors.index.json"), shards > 1);
    auto m = LoadDebertaV2(d.string());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_LE(((*m)->forward(ids, {}) - expected).abs().max().item<double>(), tolerance);
  }
}

// microsoft/deberta-v3-base as published: config.json without architectures (pos_att_type as a
// string), a checkpoint with the masked-LM heads (lm_predictions.*, mask_predictions.*), keys
// without "deberta." in part, no pooler and no classifier. A SEQ_CLS job's num_labels builds a
// new pooler and classifier (N(0, 0.02) weights, zero biases) over the same encoder.
TEST_F(TinyDebertaTest, APublishedV3FolderGetsANewHead) {
  ASSERT_TRUE(WriteTinyDebertaV2Model((dir_ / "cls").string()).ok());
  auto tensors = adapters::LoadTensors((dir_ / "cls" / "model.safetensors").string());
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  std::map<std::string, torch::Tensor> mlm;
  for (const auto& [name, t] : *tensors) {
    if (name.rfind("classifier.", 0) == 0 || name.rfind("pooler.", 0) == 0) continue;
    mlm[name] = t;
  }
  mlm["lm_predictions.lm_head.dense.weight"] = torch::zeros({64, 64});
  mlm["lm_predictions.lm_head.bias"] = torch::zeros({512});
  mlm["mask_predictions.classifier.weight"] = torch::zeros({1, 64});
  mlm["deberta.embeddings.position_ids"] = torch::arange(128).unsqueeze(0);
  const fs::path d = dir_ / "v3";
  fs::create_directories(d);
  ASSERT_TRUE(WriteCheckpointTensors(d.string(), mlm, 1).ok());
  std::ofstream(d / "config.json") << R"({
    "model_type": "deberta-v2", "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 64, "initializer_range": 0.02,
    "intermediate_size": 128, "max_position_embeddings": 128, "relative_attention": true,
    "position_buckets": 8, "norm_rel_ebd": "layer_norm", "share_att_key": true,
    "pos_att_type": "p2c|c2p", "layer_norm_eps": 1e-7, "max_relative_positions": -1,
    "position_biased_input": false, "num_attention_heads": 4, "num_hidden_layers": 2,
    "type_vocab_size": 0, "vocab_size": 512})";
  auto config = ReadModelConfig(d.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, "DebertaV2Model");
  EXPECT_EQ(SupportedTaskTypes(config->architecture), std::vector<std::string>{"SEQ_CLS"});
  EXPECT_EQ(config->max_relative_positions, 128);
  EXPECT_TRUE(config->pos_att_c2p && config->pos_att_p2c);

  auto none = LoadDebertaV2(d.string());
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), testing::HasSubstr("task SEQ_CLS"));
  LoadOptions three;
  three.num_labels = 3;
  auto m = LoadDebertaV2(d.string(), three);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->config().architecture, "DebertaV2ForSequenceClassification");
  torch::NoGradGuard no_grad;
  EXPECT_EQ((*m)->classifier->weight.sizes(), (std::vector<int64_t>{3, 64}));
  EXPECT_EQ((*m)->classifier->bias.abs().max().item<double>(), 0.0);
  EXPECT_EQ((*m)->pooler_dense->bias.abs().max().item<double>(), 0.0);
  const double std = (*m)->pooler_dense->weight.std().item<double>();
  EXPECT_GT(std, 0.015);
  EXPECT_LT(std, 0.025);
  EXPECT_FALSE((*m)->pooler_dense->weight.requires_grad()) << "PEFT leaves the pooler frozen";
  EXPECT_TRUE((*m)->classifier->weight.requires_grad());
  auto original = LoadDebertaV2((dir_ / "cls").string());
  ASSERT_TRUE(original.ok()) << original.status();
  torch::Tensor ids = torch::tensor({{1, 17, 300, 42, 2}}, torch::kLong);
  EXPECT_EQ(((*m)->Hidden(ids, {}) - (*original)->Hidden(ids, {})).abs().max().item<double>(), 0.0);

  // The 2-class head of a classifier checkpoint does not fit 3 classes: refused naming it.
  auto refused = LoadDebertaV2((dir_ / "cls").string(), three);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), testing::HasSubstr("classifier.weight"));
}

TEST_F(TinyDebertaTest, LoaderRefusesAMissingEncoderTensorByName) {
  ASSERT_TRUE(WriteTinyDebertaV2Model((dir_ / "m").string()).ok());
  auto tensors = adapters::LoadTensors((dir_ / "m" / "model.safetensors").string());
  ASSERT_TRUE(tensors.ok());
  tensors->erase("deberta.encoder.rel_embeddings.weight");
  (*tensors)["deberta.encoder.unknown.weight"] = torch::zeros({2});
  const fs::path d = dir_ / "broken";
  fs::create_directories(d);
  ASSERT_TRUE(WriteCheckpointTensors(d.string(), *tensors, 1).ok());
  fs::copy_file(dir_ / "m" / "config.json", d / "config.json");
  auto m = LoadDebertaV2(d.string());
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()),
              testing::AnyOf(testing::HasSubstr("deberta.encoder.rel_embeddings.weight"),
                             testing::HasSubstr("deberta.encoder.unknown.weight")));
}

// The server checks patterns against common/model_modules.h's list; the worker injects into the
// adapters::Linear modules model::DebertaV2 builds: the same list, shapes and biases included, and
// the pooler and classifier in neither.
TEST_F(TinyDebertaTest, TheServersModuleListIsWhatTheWorkerBuilds) {
  auto describe = [](const std::string& name, int64_t in, int64_t out, bool bias) {
    return absl::StrCat(name, " ", in, "->", out, bias ? " +bias" : "");
  };
  const ModelConfig c = TinyDebertaV2Config();
  std::vector<std::string> listed, built;
  for (const auto& m : LinearModules(c)) {
    listed.push_back(describe(m.name, m.in_features, m.out_features, m.bias));
  }
  DebertaV2 model(c);
  for (const auto& item : model->named_modules()) {
    const auto* linear = dynamic_cast<const adapters::LinearImpl*>(item.value().get());
    if (linear == nullptr) continue;
    built.push_back(describe(item.key(), linear->in_features(), linear->out_features(),
                             linear->bias.defined()));
  }
  EXPECT_EQ(listed, built);
  EXPECT_EQ(listed.size(), 12u);
  EXPECT_EQ(DefaultTargetModules(c), (std::vector<std::string>{"query_proj", "value_proj"}));
  EXPECT_EQ(c.NumParameters(), [&] {
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    return n;
  }());
}

}  // namespace
}  // namespace peftd::model
