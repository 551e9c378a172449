// make-tiny-model --arch roberta: the folder loads as RoBERTa (F32, BF16, F16, sharded), and its
// tokenizer.json follows RoBERTa's conventions through the real loaders: <s> = 0, <pad> = 1,
// </s> = 2, classification records as <s> A </s> and pairs as <s> A </s></s> B </s>
// (RobertaProcessing), the text in between as plain byte-level BPE ids; and the server's module
// list equals the modules the worker builds.
#include "worker/model/tiny_roberta.h"

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
#include "worker/model/roberta_loader.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using testing::ElementsAre;

class TinyRobertaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_tiny_roberta_" + std::to_string(::getpid()));
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

TEST_F(TinyRobertaTest, TokenizerUsesRobertasSpecialsAndTemplates) {
  ASSERT_TRUE(WriteTinyRobertaModel((dir_ / "m").string()).ok());
  auto tok = data::LoadTokenizer((dir_ / "m").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const data::SpecialTokens& s = (*tok)->special();
  EXPECT_EQ(s.bos_id, 0);
  EXPECT_EQ(s.pad_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_TRUE(s.add_bos);
  EXPECT_TRUE(s.add_eos);
  EXPECT_EQ((*tok)->TokenToId("<s>").value_or(-1), 0);
  EXPECT_EQ((*tok)->TokenToId("</s>").value_or(-1), 2);
  const std::vector<int64_t> a = (*tok)->Encode("the cat"), b = (*tok)->Encode(" sat");
  ASSERT_FALSE(a.empty());
  for (int64_t id : a) EXPECT_GE(id, 3);  // no special inside the text
  EXPECT_EQ((*tok)->Decode(a), "the cat");

  data::DatasetOptions options;
  options.task = data::Task::kSequenceClassification;
  options.num_labels = 2;
  auto single = data::LoadDatasetFromBytes(R"({"text": "the cat", "label": 1})", "train.jsonl",
                                           **tok, options);
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_EQ(single->examples.size(), 1u);
  EXPECT_EQ(single->examples[0].input_ids, Concat({{0}, a, {2}}));
  EXPECT_EQ(single->examples[0].class_label, 1);
  auto pair = data::LoadDatasetFromBytes(R"({"text": "the cat", "text_pair": " sat", "label": 0})",
                                         "pairs.jsonl", **tok, options);
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_EQ(pair->examples.size(), 1u);
  EXPECT_EQ(pair->examples[0].input_ids, Concat({{0}, a, {2, 2}, b, {2}}));
}

TEST_F(TinyRobertaTest, LoadsInEveryStoredDtypeAndFromShards) {
  auto reference = [&]() {
    EXPECT_TRUE(WriteTinyRobertaModel((dir_ / "f32").string()).ok());
    auto m = LoadRoberta((dir_ / "f32").string());
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }();
  torch::Tensor ids = torch::tensor({{0, 17, 300, 42, 2}}, torch::kLong);
  torch::NoGradGuard no_grad;
  const torch::Tensor expected = reference->forward(ids, {});
  for (const auto& [dtype, shards, tolerance] : std::vector<std::tuple<std::string, int, double>>{
           {"float32", 3, 0.0}, {"bfloat16", 1, 0.5}, {"float16", 2, 0.05}}) {
    SCOPED_TRACE(dtype);
    const fs::path d = dir_ / (dtype + std::to_string(shards));
    ASSERT_TRUE(WriteTinyRobertaModel(d.string(), shards, dtype).ok());
    EXPECT_EQ(fs::exists(d / "model.safetensors.index.json"), shards > 1);
    auto m = LoadRoberta(d.string());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_LE(((*m)->forward(ids, {}) - expected).abs().max().item<double>(), tolerance);
  }
}

TEST_F(TinyRobertaTest, LoaderRefusesAMissingOrForeignTensorByName) {
  ASSERT_TRUE(WriteTinyRobertaModel((dir_ / "m").string()).ok());
  // A masked-LM checkpoint of the same encoder (config says RobertaForMaskedLM) trains a new
  // classifier when the job gives num_labels, and is refused without.
  const std::string config_path = (dir_ / "m" / "config.json").string();
  std::string text;
  {
    std::ifstream in(config_path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string from = "RobertaForSequenceClassification";
  text.replace(text.find(from), from.size(), "RobertaForMaskedLM");
  std::ofstream(config_path) << text;
  auto none = LoadRoberta((dir_ / "m").string());
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), testing::HasSubstr("task SEQ_CLS"));
  LoadOptions three;
  three.num_labels = 3;
  auto refused = LoadRoberta((dir_ / "m").string(), three);
  // The checkpoint's 2-class classifier does not fit 3 classes: refused naming the tensor.
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              testing::HasSubstr("classifier.out_proj.weight"));
}

// A masked-LM checkpoint as roberta-base is published (no classifier; lm_head.* and a pooler that
// the classifier does not use, the keys without "roberta."): a SEQ_CLS job's num_labels builds a
// new classifier, initialised as transformers does (N(0, 0.02) weights, zero biases), over the
// same encoder.
TEST_F(TinyRobertaTest, AMaskedLmCheckpointGetsANewClassifier) {
  ASSERT_TRUE(WriteTinyRobertaModel((dir_ / "cls").string()).ok());
  auto tensors = adapters::LoadTensors((dir_ / "cls" / "model.safetensors").string());
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  std::map<std::string, torch::Tensor> mlm;
  for (const auto& [name, t] : *tensors) {
    if (name.rfind("classifier.", 0) == 0) continue;
    mlm[name.substr(std::string("roberta.").size())] = t;
  }
  mlm["lm_head.dense.weight"] = torch::zeros({64, 64});
  mlm["lm_head.bias"] = torch::zeros({512});
  mlm["pooler.dense.weight"] = torch::zeros({64, 64});
  const fs::path d = dir_ / "mlm";
  fs::create_directories(d);
  ASSERT_TRUE(WriteCheckpointTensors(d.string(), mlm, 1).ok());
  ModelConfig config = TinyRobertaConfig();
  config.architecture = "RobertaForMaskedLM";
  config.sequence_classification = false;
  std::ofstream(d / "config.json") << ModelConfigJson(config);

  LoadOptions three;
  three.num_labels = 3;
  auto m = LoadRoberta(d.string(), three);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->config().architecture, "RobertaForSequenceClassification");
  torch::NoGradGuard no_grad;
  EXPECT_EQ((*m)->classifier_out_proj->weight.sizes(), (std::vector<int64_t>{3, 64}));
  EXPECT_EQ((*m)->classifier_dense->bias.abs().max().item<double>(), 0.0);
  const double std = (*m)->classifier_dense->weight.std().item<double>();
  EXPECT_GT(std, 0.015);
  EXPECT_LT(std, 0.025);
  auto original = LoadRoberta((dir_ / "cls").string());
  ASSERT_TRUE(original.ok()) << original.status();
  torch::Tensor ids = torch::tensor({{0, 17, 300, 42, 2}}, torch::kLong);
  EXPECT_EQ(((*m)->Hidden(ids, {}) - (*original)->Hidden(ids, {})).abs().max().item<double>(), 0.0);
}

// The server checks patterns against common/model_modules.h's list; the worker injects into the
// adapters::Linear modules model::Roberta builds: the same list, shapes and biases included, and
// the classifier in neither.
TEST_F(TinyRobertaTest, TheServersModuleListIsWhatTheWorkerBuilds) {
  auto describe = [](const std::string& name, int64_t in, int64_t out, bool bias) {
    return absl::StrCat(name, " ", in, "->", out, bias ? " +bias" : "");
  };
  const ModelConfig c = TinyRobertaConfig();
  std::vector<std::string> listed, built;
  for (const auto& m : LinearModules(c)) {
    listed.push_back(describe(m.name, m.in_features, m.out_features, m.bias));
  }
  Roberta model(c);
  for (const auto& item : model->named_modules()) {
    const auto* linear = dynamic_cast<const adapters::LinearImpl*>(item.value().get());
    if (linear == nullptr) continue;
    built.push_back(describe(item.key(), linear->in_features(), linear->out_features(),
                             linear->bias.defined()));
  }
  EXPECT_EQ(listed, built);
  EXPECT_EQ(listed.size(), 12u);
}

}  // namespace
}  // namespace peftd::model
