// PeftDebertaV2: the classification loss is the summed cross-entropy of the classifier's logits
// through the pooler on [CLS], the classifier trains whole with the adapters and nothing else of
// the base does (the pooler stays frozen, as PEFT leaves it), and the adapter folder is PEFT's for
// a DeBERTa classifier (task_type SEQ_CLS, modules_to_save ["classifier"], the classifier's two
// tensors under base_model.model.classifier.), loading back to the same logits; gradients reach
// the adapters through the position path too.
#include "worker/train/peft_deberta_v2.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "adapters/peft_files.h"
#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/tiny_deberta_v2.h"

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

constexpr int64_t kRank = 4;

class PeftDebertaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_peft_deberta_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    ASSERT_TRUE(model::WriteTinyDebertaV2Model((dir_ / "model").string()).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  model::DebertaV2 LoadDouble() {
    model::LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = model::LoadDebertaV2((dir_ / "model").string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  std::unique_ptr<PeftDebertaV2> Make(model::DebertaV2 model) {
    AdapterConfig c;
    c.method = MethodKind::kLora;
    c.lora = {.r = kRank, .alpha = 8};
    c.targets.target_modules = {"query_proj", "value_proj"};
    c.task_type = "SEQ_CLS";
    c.modules_to_save = {"classifier"};
    torch::manual_seed(3);
    auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
    EXPECT_TRUE(peft.ok()) << peft.status();
    return std::make_unique<PeftDebertaV2>(model, std::move(*peft));
  }
  fs::path dir_;
};

TEST_F(PeftDebertaTest, LossIsTheSummedCrossEntropyOfTheFirstTokensLogits) {
  auto trainable = Make(LoadDouble());
  Batch batch;
  batch.input_ids = torch::tensor({{1, 17, 300, 42, 2}, {1, 5, 2, 0, 0}}, torch::kLong);
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

TEST_F(PeftDebertaTest, ClassifierTrainsWholeAndIsSavedAsPeftsModulesToSave) {
  auto trainable = Make(LoadDouble());
  std::set<std::string> head;
  for (auto& [name, t] : trainable->peft().TrainableTensors()) {
    if (name.rfind("classifier.", 0) == 0) {
      head.insert(name);
    } else {
      EXPECT_NE(name.find(".adapter."), std::string::npos) << name;
    }
  }
  EXPECT_EQ(head, (std::set<std::string>{"classifier.weight", "classifier.bias"}));
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
  EXPECT_EQ(tensors.size(), 2u * 2 * 2 + 2);  // A and B of query_proj and value_proj, the head
  EXPECT_EQ(
      tensors.at("base_model.model.deberta.encoder.layer.0.attention.self.query_proj.lora_A.weight")
          .sizes(),
      (std::vector<int64_t>{kRank, 64}));
  EXPECT_EQ(tensors.at("base_model.model.classifier.weight").sizes(),
            (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(tensors.at("base_model.model.classifier.bias").sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(tensors.count("base_model.model.pooler.dense.weight"), 0u);

  torch::Tensor ids = torch::tensor({{1, 17, 300, 42, 2}}, torch::kLong);
  torch::NoGradGuard no_grad;
  torch::Tensor trained = trainable->model()->forward(ids, {});
  model::DebertaV2 fresh = LoadDouble();
  auto loaded = adapters::LoadAdapter(fresh.get(), out.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // The file holds fp32: the reloaded adapter and head are the trained ones rounded to float.
  EXPECT_LT((fresh->forward(ids, {}) - trained).abs().max().item<double>(), 1e-5);
  EXPECT_GT((fresh->forward(ids, {}) - LoadDouble()->forward(ids, {})).abs().max().item<double>(),
            1e-3);
}

// query_proj's adapter gets a gradient from the relative embeddings' projection alone: with the
// token rows' input cut off (the gate's threshold past every ratio), its lora_A still learns.
TEST_F(PeftDebertaTest, ThePositionPathCarriesGradient) {
  model::DebertaV2 model = LoadDouble();
  AdapterConfig c;
  c.method = MethodKind::kLora;
  c.lora = {.r = kRank, .alpha = 8};
  c.gate = adapters::GateOptions{};
  c.targets.target_modules = {"key_proj"};
  c.task_type = "SEQ_CLS";
  c.modules_to_save = {"classifier"};
  torch::manual_seed(3);
  auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  for (const auto& [name, linear] : (*peft)->linears()) {
    auto* gate = dynamic_cast<adapters::TokenGate*>(linear->adapter().get());
    ASSERT_NE(gate, nullptr);
    gate->set_tau(1e30);
    torch::NoGradGuard no_grad;
    for (auto& p : gate->inner()->parameters()) p.add_(torch::randn_like(p) * 0.3);
  }
  PeftDebertaV2 trainable(model, std::move(*peft));
  trainable.SetTraining(true);
  Batch batch;
  batch.input_ids = torch::tensor({{1, 17, 300, 42, 2}}, torch::kLong);
  batch.attention_mask = torch::ones({1, 5}, torch::kLong);
  batch.labels = torch::tensor({1}, torch::kLong);
  trainable.Forward(batch).loss_sum.backward();
  for (auto& [name, t] : trainable.peft().TrainableTensors()) {
    if (name.find("lora_A") == std::string::npos) continue;
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_GT(t.grad().abs().max().item<double>(), 0) << name;
  }
}

}  // namespace
}  // namespace peftd::train
