// Every method, plain and under the token gate, on each kind of RoBERTa module (query, key, value,
// attention.output.dense, intermediate.dense, output.dense) equals its closed form written from the
// checkpoint's weight, in double precision; the classifier head is no target (its `dense` is not
// adapted by the pattern "dense").
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "worker/model/roberta.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/tiny_roberta.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

constexpr int64_t kRank = 4;

class RobertaFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_roberta_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyRobertaModel(dir_->string()).ok());
    weights_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static Roberta LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadRoberta(dir_->string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  static AdapterConfig Config(MethodKind method, bool gate) {
    AdapterConfig c;
    c.method = method;
    c.lora = {.r = kRank, .alpha = 8};
    c.adalora = {.init_r = kRank, .alpha = 8};
    c.adalora_schedule.init_r = kRank;
    c.adalora_schedule.target_r = 2;
    c.adalora_schedule.tinit = 2;
    c.adalora_schedule.tfinal = 2;
    c.adalora_schedule.total_step = 20;
    c.hut = {.r = kRank};
    if (gate) c.gate = adapters::GateOptions{};
    c.targets.target_modules = {"query", "key", "value", "dense"};
    c.task_type = "SEQ_CLS";
    c.modules_to_save = {"classifier"};
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* weights_;
};
fs::path* RobertaFixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* RobertaFixture::weights_ = nullptr;

class RobertaMethodsTest : public RobertaFixture,
                           public ::testing::WithParamInterface<std::tuple<MethodKind, bool>> {};

// The method's h: x (N, in), W (out, in), b (out); p the adapter's parameters by name.
torch::Tensor ClosedForm(MethodKind method, const std::map<std::string, torch::Tensor>& p,
                         const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  switch (method) {
    case MethodKind::kLora: {
      const double s = 8.0 / kRank;
      return x.matmul((w + s * p.at("lora_B").matmul(p.at("lora_A"))).t()) + b;
    }
    case MethodKind::kDora: {
      const double s = 8.0 / kRank;
      torch::Tensor v = w + s * p.at("lora_B").matmul(p.at("lora_A"));
      torch::Tensor g = p.at("lora_magnitude_vector") / v.norm(2, 1);
      return x.matmul(v.t()) * g + b;
    }
    case MethodKind::kAdaLora: {
      const double s = 8.0 / (kRank + 1e-5);
      torch::Tensor delta = p.at("lora_B").matmul(p.at("lora_A") * p.at("lora_E"));
      return x.matmul((w + s * delta).t()) + b;
    }
    case MethodKind::kHut: {
      torch::Tensor m_a = p.at("hut_A").mean(1), m_b = p.at("hut_B").mean(0);
      return p.at("hut_gamma") * ((x * m_a).matmul(w.t()) * m_b + b) + p.at("hut_beta");
    }
    case MethodKind::kAdaDhp:
      return (x * p.at("adadhp_l")).matmul(w.t()) * p.at("adadhp_r") + b;
  }
  return {};
}

TEST_P(RobertaMethodsTest, EveryModuleKindEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  Roberta model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  ASSERT_EQ((*peft)->module_names().size(), 12u);  // 6 per layer, 2 layers; not the classifier
  const auto& linears = (*peft)->linears();
  for (const std::string name :
       {"roberta.encoder.layer.0.attention.self.query",
        "roberta.encoder.layer.1.attention.self.key",
        "roberta.encoder.layer.0.attention.self.value",
        "roberta.encoder.layer.1.attention.output.dense",
        "roberta.encoder.layer.0.intermediate.dense", "roberta.encoder.layer.1.output.dense"}) {
    SCOPED_TRACE(name);
    adapters::LinearImpl* linear = linears.at(name);
    adapters::Adapter* inner = adapters::PeftModel::Unwrap(linear->adapter().get());
    std::map<std::string, torch::Tensor> p;
    {
      torch::NoGradGuard no_grad;
      for (auto& item : inner->named_parameters()) {
        item.value().add_(torch::randn_like(item.value()) * 0.3);
        p[item.key()] = item.value().detach();
      }
    }
    const torch::Tensor w = weights_->at(name + ".weight").to(torch::kDouble);
    const torch::Tensor b = weights_->at(name + ".bias").to(torch::kDouble);
    torch::Tensor x = torch::randn({2, 5, w.size(1)}, torch::kDouble);
    torch::Tensor expected = ClosedForm(method, p, x, w, b);
    if (gated) {
      // h_i = base_i + S_i·Δ_i with S_i = 1{‖Δ_i‖ / ‖base_i‖ ≥ τ}; τ between the 5th and 6th
      // smallest of the 10 ratios turns half the tokens off.
      torch::Tensor base = x.matmul(w.t()) + b;
      torch::Tensor delta = expected - base;
      torch::Tensor ratio = delta.norm(2, -1) / base.norm(2, -1).clamp_min(1e-12);
      torch::Tensor sorted = std::get<0>(ratio.flatten().sort());
      const double tau = (sorted[4].item<double>() + sorted[5].item<double>()) / 2;
      dynamic_cast<adapters::TokenGate*>(linear->adapter().get())->set_tau(tau);
      torch::Tensor on = ratio.ge(tau).unsqueeze(-1).to(torch::kDouble);
      ASSERT_GT(on.sum().item<double>(), 0);
      ASSERT_LT(on.sum().item<double>(), 10);
      expected = base + on * delta;
      (*peft)->gate_context().token_mask = torch::ones({2, 5}, torch::kLong);
    }
    torch::NoGradGuard no_grad;
    torch::Tensor got = linear->forward(x);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-10);
    EXPECT_GT((expected - (x.matmul(w.t()) + b)).abs().max().item<double>(), 1e-3)
        << "the perturbed adapter changes the output";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, RobertaMethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

}  // namespace
}  // namespace peftd::model
