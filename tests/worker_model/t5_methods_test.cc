// Every method, plain and under the token gate, on every kind of T5 module (self-attention and
// cross-attention q, k, v, o; the gated feed-forward's wi_0, wi_1 and wo; the untied lm_head)
// equals its closed form written from the checkpoint's weight, in double precision. Also: a T5
// adapter folder keeps PEFT's keys (base_model.model.encoder.block.0.layer.0.SelfAttention.q...),
// says task_type SEQ_2_SEQ_LM, and loads back to the same logits; the cross-attention's gate counts
// the encoder's real tokens.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "adapters/peft_files.h"
#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "common/model_modules.h"
#include "nlohmann/json.hpp"
#include "tests/worker_model/family_methods.h"
#include "worker/model/t5.h"
#include "worker/model/t5_loader.h"
#include "worker/model/tiny_t5.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

using testing_methods::kRank;

class T5Fixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_t5_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyT5Model(dir_->string()).ok());
    weights_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static T5 LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadT5(dir_->string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  static AdapterConfig Config(MethodKind method, bool gate) {
    AdapterConfig c = testing_methods::MethodConfig(
        method, gate, {"q", "k", "v", "o", "wi_0", "wi_1", "wo", "lm_head"});
    c.task_type = "SEQ_2_SEQ_LM";
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* weights_;
};
fs::path* T5Fixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* T5Fixture::weights_ = nullptr;

class T5MethodsTest : public T5Fixture,
                      public ::testing::WithParamInterface<std::tuple<MethodKind, bool>> {};
class T5AdapterFileTest : public T5Fixture {};

using testing_methods::ClosedForm;

TEST_P(T5MethodsTest, EveryModuleKindEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  T5 model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  // Encoder: 2 blocks of q, k, v, o, wi_0, wi_1, wo; decoder: 3 blocks with the cross-attention's
  // four more; lm_head.
  ASSERT_EQ((*peft)->module_names().size(), 2u * 7 + 3u * 11 + 1);
  const auto& linears = (*peft)->linears();
  for (const std::string name :
       {"encoder.block.0.layer.0.SelfAttention.q", "encoder.block.1.layer.0.SelfAttention.o",
        "encoder.block.0.layer.1.DenseReluDense.wi_0", "encoder.block.1.layer.1.DenseReluDense.wo",
        "decoder.block.0.layer.0.SelfAttention.v", "decoder.block.1.layer.1.EncDecAttention.k",
        "decoder.block.2.layer.1.EncDecAttention.o", "decoder.block.2.layer.2.DenseReluDense.wi_1",
        "lm_head"}) {
    SCOPED_TRACE(name);
    adapters::LinearImpl* linear = linears.at(name);
    const std::map<std::string, torch::Tensor> p = testing_methods::PerturbAdapter(linear);
    const torch::Tensor w = weights_->at(name + ".weight").to(torch::kDouble);
    torch::Tensor x = torch::randn({2, 5, w.size(1)}, torch::kDouble);
    torch::Tensor expected = ClosedForm(method, p, x, w, torch::Tensor());
    if (gated) {
      expected = testing_methods::GateHalfTheTokens(linear, x.matmul(w.t()), expected);
      (*peft)->gate_context().token_mask = torch::ones({2, 5}, torch::kLong);
    }
    torch::NoGradGuard no_grad;
    torch::Tensor got = linear->forward(x);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-10);
    EXPECT_GT((expected - x.matmul(w.t())).abs().max().item<double>(), 1e-3)
        << "the perturbed adapter changes the output";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, T5MethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

// The worker's modules are the server's list (common/model_modules.cc), in the same order, for
// both variants.
TEST_F(T5AdapterFileTest, WorkerModulesAreTheServersList) {
  for (bool v1_0 : {false, true}) {
    const ModelConfig config = TinyT5Config(v1_0);
    T5 model(config);
    std::vector<std::string> built;
    for (const auto& item : model->named_modules("", /*include_self=*/false)) {
      if (auto* linear = item.value()->as<adapters::LinearImpl>()) {
        built.push_back(item.key());
        (void)linear;
      }
    }
    std::vector<std::string> listed;
    for (const auto& m : LinearModules(config)) listed.push_back(m.name);
    EXPECT_EQ(built, listed) << "v1_0 " << v1_0;
  }
}

// The gate of a cross-attention key projection reads the encoder's output, so it must count the
// encoder's real tokens (not the decoder's positions, nor the encoder's padding): its training
// statistics over a padded batch equal those over its rows run one by one without padding.
TEST_F(T5AdapterFileTest, TheCrossAttentionGateCountsTheEncodersRealTokens) {
  T5 model = LoadDouble();
  const std::string name = "decoder.block.0.layer.1.EncDecAttention.k";
  AdapterConfig c = Config(MethodKind::kLora, true);
  c.targets.target_modules = {name};
  torch::manual_seed(5);
  auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  adapters::LinearImpl* linear = (*peft)->linears().at(name);
  adapters::Adapter* inner = adapters::PeftModel::Unwrap(linear->adapter().get());
  std::map<std::string, torch::Tensor> p;
  {
    torch::NoGradGuard no_grad;
    for (auto& item : inner->named_parameters()) {
      item.value().add_(torch::randn_like(item.value()) * 0.3);
      p[item.key()] = item.value().detach();
    }
  }
  const torch::Tensor ids = torch::tensor(
      {{5, 17, 300, 42, 7, 99, 509, 510}, {1, 2, 510, 511, 511, 511, 511, 511}}, torch::kLong);
  const torch::Tensor mask =
      torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0, 0, 0}}, torch::kLong);
  const torch::Tensor labels = torch::tensor({{8, 9, 510}, {20, 21, 510}}, torch::kLong);
  {
    // τ: the median ratio ‖Δ‖ / ‖base‖ over the real encoder tokens, so some are on, some off.
    torch::NoGradGuard no_grad;
    torch::Tensor enc = model->Encode(ids, mask);
    torch::Tensor base = enc.matmul(linear->weight.t());
    torch::Tensor delta = 2.0 * enc.matmul(p.at("lora_A").t()).matmul(p.at("lora_B").t());
    torch::Tensor ratio = (delta.norm(2, -1) / base.norm(2, -1)).index({mask.to(torch::kBool)});
    dynamic_cast<adapters::TokenGate*>(linear->adapter().get())
        ->set_tau(ratio.median().item<double>() + 1e-9);
  }
  model->train();
  adapters::GateContext* gate = &(*peft)->gate_context();
  auto run = [&](const torch::Tensor& i, const torch::Tensor& m, const torch::Tensor& l) {
    torch::Tensor enc = model->Encode(i, m, gate);
    model->Decode(model->ShiftRight(l), enc, m, gate);
  };
  (*peft)->TakeGateSparsity();
  run(ids, mask, labels);
  const auto padded = (*peft)->TakeGateSparsity().at(name);
  run(ids.narrow(0, 0, 1), mask.narrow(0, 0, 1), labels.narrow(0, 0, 1));
  run(ids.narrow(0, 1, 1).narrow(1, 0, 3), mask.narrow(0, 1, 1).narrow(1, 0, 3),
      labels.narrow(0, 1, 1));
  const auto alone = (*peft)->TakeGateSparsity().at(name);
  EXPECT_GT(alone.per_token, 0);
  EXPECT_LT(alone.per_token, 1);
  EXPECT_NEAR(padded.per_token, alone.per_token, 1e-12);
  EXPECT_NEAR(padded.per_sequence, alone.per_sequence, 1e-12);
}

TEST_F(T5AdapterFileTest, IsPeftsT5LayoutAndLoadsBack) {
  T5 model = LoadDouble();
  torch::manual_seed(3);
  AdapterConfig c = Config(MethodKind::kLora, false);
  c.targets.target_modules = {"q", "v"};
  auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : (*peft)->TrainableTensors()) t.add_(torch::randn_like(t) * 0.3);
  }
  const fs::path out = *dir_ / "adapter";
  ASSERT_TRUE(adapters::SaveAdapter(**peft, out.string()).ok());
  auto config = nlohmann::json::parse(std::ifstream(out / "adapter_config.json"));
  EXPECT_EQ(config["task_type"], "SEQ_2_SEQ_LM");
  EXPECT_EQ(config["fan_in_fan_out"], false);
  auto tensors = *adapters::LoadTensors((out / "adapter_model.safetensors").string());
  // q and v of 2 encoder self-attentions, 3 decoder self- and 3 cross-attentions: A and B each.
  EXPECT_EQ(tensors.size(), 2u * 2 * (2 + 3 + 3));
  EXPECT_EQ(
      tensors.at("base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight").sizes(),
      (std::vector<int64_t>{kRank, 64}));
  EXPECT_EQ(tensors.at("base_model.model.decoder.block.2.layer.1.EncDecAttention.v.lora_B.weight")
                .sizes(),
            (std::vector<int64_t>{32, kRank}));
  auto read = adapters::ReadAdapterConfig(out.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->task_type, "SEQ_2_SEQ_LM");

  torch::Tensor ids = torch::tensor({{5, 17, 300, 42, 510}}, torch::kLong);
  torch::Tensor labels = torch::tensor({{7, 8, 510}}, torch::kLong);
  torch::NoGradGuard no_grad;
  torch::Tensor trained = model->forward(ids, {}, labels);
  T5 fresh = LoadDouble();
  auto loaded = adapters::LoadAdapter(fresh.get(), out.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // The file holds fp32: the reloaded adapter is the trained one rounded to float.
  EXPECT_LT((fresh->forward(ids, {}, labels) - trained).abs().max().item<double>(), 1e-5);
  EXPECT_GT((fresh->forward(ids, {}, labels) - LoadDouble()->forward(ids, {}, labels))
                .abs()
                .max()
                .item<double>(),
            1e-4);
}

}  // namespace
}  // namespace peftd::model
