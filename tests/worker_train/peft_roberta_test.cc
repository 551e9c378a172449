// PeftRoberta: the classification loss is the summed cross-entropy of the classifier's logits on
// <s>, the head trains whole with the adapters and nothing else of the base does, and the adapter
// folder is PEFT's for a RoBERTa classifier (task_type SEQ_CLS, modules_to_save ["classifier"],
// the head's four tensors under base_model.model.classifier.), loading back to the same logits.
#include "worker/train/peft_roberta.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "adapters/peft_files.h"
#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "worker/model/roberta_loader.h"
#include "worker/model/tiny_roberta.h"

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

constexpr int64_t kRank = 4;

class PeftRobertaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_peft_roberta_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    ASSERT_TRUE(model::WriteTinyRobertaModel((dir_ / "model").string()).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  model::Roberta LoadDouble() {
    model::LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = model::LoadRoberta((dir_ / "model").string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  std::unique_ptr<PeftRoberta> Make(model::Roberta model) {
    AdapterConfig c;
    c.method = MethodKind::kLora;
    c.lora = {.r = kRank, .alpha = 8};
    c.targets.target_modules = {"query", "value"};
    c.task_type = "SEQ_CLS";
    c.modules_to_save = {"classifier"};
    torch::manual_seed(3);
    auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
    EXPECT_TRUE(peft.ok()) << peft.status();
    return std::make_unique<PeftRoberta>(model, std::move(*peft));
  }
  fs::path dir_;
};

TEST_F(PeftRobertaTest, LossIsTheSummedCrossEntropyOfTheFirstTokensLogits) {
  auto trainable = Make(LoadDouble());
  Batch batch;
  batch.input_ids = torch::tensor({{0, 17, 300, 42, 2}, {0, 5, 2, 1, 1}}, torch::kLong);
  batch.attention_mask = torch::tensor({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}}, torch::kLong);
  batch.labels = torch::tensor({1, 0}, torch::kLong);
  LossOutput out = trainable->Forward(batch);
  torch::NoGradGuard no_grad;
  torch::Tensor logits = trainable->model()->forward(batch.input_ids, batch.attention_mask);
  torch::Tensor logp = torch::log_softmax(logits, -1);
  const double expected = -(logp[0][1] + logp[1][0]).item<double>();
  EXPECT_NEAR(out.loss_sum.item<double>(), expected, 1e-12);
  EXPECT_EQ(out.correct, logits.argmax(-1).eq(batch.labels).sum().item<int64_t>());
}

TEST_F(PeftRobertaTest, ClassifierTrainsWholeAndIsSavedAsPeftsModulesToSave) {
  auto trainable = Make(LoadDouble());
  std::set<std::string> head;
  for (auto& [name, t] : trainable->peft().TrainableTensors()) {
    if (name.rfind("classifier.", 0) == 0) {
      head.insert(name);
    } else {
      EXPECT_NE(name.find(".adapter."), std::string::npos) << name;
    }
  }
  EXPECT_EQ(head,
            (std::set<std::string>{"classifier.dense.weight", "classifier.dense.bias",
                                   "classifier.out_proj.weight", "classifier.out_proj.bias"}));
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : trainable->peft().TrainableTensors()) {
      t.add_(torch::randn_like(t) * 0.3);
    }
  }
  const fs::path out = dir_ / "adapter";
  ASSERT_TRUE(trainable->ExportAdapter(out.string()).ok());
  auto config = nlohmann::json::parse(std::ifstream(out / "adapter_config.json"));
  EXPECT_EQ(config["task_type"], "SEQ_CLS");
  EXPECT_EQ(config["modules_to_save"], nlohmann::json::array({"classifier"}));
  auto tensors = *adapters::LoadTensors((out / "adapter_model.safetensors").string());
  EXPECT_EQ(tensors.size(), 2u * 2 * 2 + 4);  // A and B of query and value in 2 layers, the head
  EXPECT_EQ(
      tensors.at("base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight")
          .sizes(),
      (std::vector<int64_t>{kRank, 64}));
  EXPECT_EQ(tensors.at("base_model.model.classifier.out_proj.weight").sizes(),
            (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(tensors.at("base_model.model.classifier.dense.bias").sizes(),
            (std::vector<int64_t>{64}));

  torch::Tensor ids = torch::tensor({{0, 17, 300, 42, 2}}, torch::kLong);
  torch::NoGradGuard no_grad;
  torch::Tensor trained = trainable->model()->forward(ids, {});
  model::Roberta fresh = LoadDouble();
  auto loaded = adapters::LoadAdapter(fresh.get(), out.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // The file holds fp32: the reloaded adapter and head are the trained ones rounded to float.
  EXPECT_LT((fresh->forward(ids, {}) - trained).abs().max().item<double>(), 1e-5);
  EXPECT_GT((fresh->forward(ids, {}) - LoadDouble()->forward(ids, {})).abs().max().item<double>(),
            1e-3);
}

}  // namespace
}  // namespace peftd::train
