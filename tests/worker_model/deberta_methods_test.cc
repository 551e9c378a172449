// Every method, plain and under the token gate, on each kind of DeBERTa-v3 module (query_proj,
// key_proj, value_proj, attention.output.dense, intermediate.dense, output.dense) equals its closed
// form written from the checkpoint's weight, in double precision; the head is no target (the
// pattern "dense" adapts no pooler.dense). query_proj and key_proj also project the relative
// embeddings: there every method's change applies un-gated (the rows are no tokens), and the
// gate's counters see the batch's real tokens only.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "worker/model/deberta_v2.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/tiny_deberta_v2.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

constexpr int64_t kRank = 4;

class DebertaFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_deberta_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyDebertaV2Model(dir_->string()).ok());
    weights_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static DebertaV2 LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadDebertaV2(dir_->string(), o);
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
    c.targets.target_modules = {"query_proj", "key_proj", "value_proj", "dense"};
    c.task_type = "SEQ_CLS";
    c.modules_to_save = {"classifier"};
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* weights_;
};
fs::path* DebertaFixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* DebertaFixture::weights_ = nullptr;

class DebertaMethodsTest : public DebertaFixture,
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

TEST_P(DebertaMethodsTest, EveryModuleKindEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  DebertaV2 model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  ASSERT_EQ((*peft)->module_names().size(), 12u);  // 6 per layer, 2 layers; not the head
  const auto& linears = (*peft)->linears();
  for (const std::string name :
       {"deberta.encoder.layer.0.attention.self.query_proj",
        "deberta.encoder.layer.1.attention.self.key_proj",
        "deberta.encoder.layer.0.attention.self.value_proj",
        "deberta.encoder.layer.1.attention.output.dense",
        "deberta.encoder.layer.0.intermediate.dense", "deberta.encoder.layer.1.output.dense"}) {
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
    // The relative embeddings' projection: the method's closed form, un-gated whatever τ.
    torch::Tensor rel = torch::randn({16, w.size(1)}, torch::kDouble);
    if (gated) dynamic_cast<adapters::TokenGate*>(linear->adapter().get())->set_tau(1e30);
    EXPECT_LT((ProjectPositions(*linear, rel) - ClosedForm(method, p, rel, w, b))
                  .abs()
                  .max()
                  .item<double>(),
              1e-10);
  }
}

// A whole forward under the gate: with τ past every ratio the tokens take the base outputs while
// the position rows keep the method's change; the gate counts the batch's real tokens, not the
// rows of the relative embeddings.
class DebertaGateTest : public DebertaFixture, public ::testing::WithParamInterface<MethodKind> {};

TEST_P(DebertaGateTest, PositionRowsTakeTheUngatedChangeAndAreNotCounted) {
  const MethodKind method = GetParam();
  DebertaV2 model = LoadDouble();
  DebertaV2 plain = LoadDouble();
  torch::manual_seed(7);
  AdapterConfig config = Config(method, true);
  config.targets.target_modules = {"query_proj", "key_proj"};
  auto peft = adapters::PeftModel::Apply(model.get(), config, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  for (const auto& [name, linear] : (*peft)->linears()) {
    adapters::Adapter* inner = adapters::PeftModel::Unwrap(linear->adapter().get());
    torch::NoGradGuard no_grad;
    for (auto& item : inner->named_parameters()) {
      item.value().add_(torch::randn_like(item.value()) * 0.3);
    }
    dynamic_cast<adapters::TokenGate*>(linear->adapter().get())->set_tau(1e30);
  }
  torch::Tensor ids = torch::tensor({{1, 17, 300, 42, 7, 99, 2}, {1, 5, 17, 2, 0, 0, 0}});
  torch::Tensor mask = ids.ne(0).to(torch::kLong);
  (*peft)->gate_context().token_mask = mask;
  model->train();  // the gate's training window counts a forward with gradients
  torch::Tensor gated_logits = model->forward(ids, mask).detach();
  // Every token is off, so only the position rows' change can move the logits off the plain
  // model's (their closed form is checked module by module above).
  torch::Tensor plain_logits = plain->forward(ids, mask).detach();
  EXPECT_GT((gated_logits - plain_logits).abs().max().item<double>(), 1e-6);
  for (const auto& [name, linear] : (*peft)->linears()) {
    auto* gate = dynamic_cast<adapters::TokenGate*>(linear->adapter().get());
    ASSERT_NE(gate, nullptr);
    const auto counters = gate->TrainWindowCounters();
    EXPECT_EQ(counters[1].item<double>(), mask.sum().item<double>())
        << name << ": the gate counts the real tokens only";
    EXPECT_EQ(counters[0].item<double>(), 0)
        << name << ": τ past every ratio turns every token off";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, DebertaMethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

INSTANTIATE_TEST_SUITE_P(AllMethods, DebertaGateTest,
                         ::testing::Values(MethodKind::kLora, MethodKind::kDora,
                                           MethodKind::kAdaLora, MethodKind::kHut,
                                           MethodKind::kAdaDhp),
                         [](const auto& info) {
                           return std::string(adapters::MethodName(info.param)) + "_S";
                         });

}  // namespace
}  // namespace peftd::model
