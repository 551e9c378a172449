// Every method, plain and under the token gate, on GPT-2's Conv1D layers (c_attn, attn.c_proj,
// c_fc, mlp.c_proj) equals its closed form written in Conv1D orientation from the checkpoint's
// (in, out) weight, in double precision: LoRA's update enters as W_conv + s·(B·A)ᵀ, which is how
// PEFT merges a fan_in_fan_out layer, so adapter tensors in the usual (r, in) / (out, r) layout
// mean on our GPT-2 what they mean in PEFT's. Also: the adapter folder of a GPT-2 says
// fan_in_fan_out: true, keeps PEFT's keys and shapes, and loads back to the same logits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "adapters/peft_files.h"
#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "worker/model/gpt2.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/tiny_gpt2.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

constexpr int64_t kRank = 4;

class Gpt2Fixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_gpt2_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyGpt2Model(dir_->string()).ok());
    conv_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static Gpt2 LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadGpt2(dir_->string(), o);
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
    c.targets.target_modules = {"c_attn", "c_proj", "c_fc"};
    c.fan_in_fan_out = true;
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* conv_;
};
fs::path* Gpt2Fixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* Gpt2Fixture::conv_ = nullptr;

class Gpt2MethodsTest : public Gpt2Fixture,
                        public ::testing::WithParamInterface<std::tuple<MethodKind, bool>> {};
class Gpt2AdapterFileTest : public Gpt2Fixture {};

// The method's h in Conv1D orientation: x (N, in), Wc (in, out), b (out); p the adapter's
// parameters by name.
torch::Tensor ClosedForm(MethodKind method, const std::map<std::string, torch::Tensor>& p,
                         const torch::Tensor& x, const torch::Tensor& wc, const torch::Tensor& b) {
  switch (method) {
    case MethodKind::kLora: {
      const double s = 8.0 / kRank;
      return x.matmul(wc + s * p.at("lora_A").t().matmul(p.at("lora_B").t())) + b;
    }
    case MethodKind::kDora: {
      const double s = 8.0 / kRank;
      torch::Tensor w = wc.t() + s * p.at("lora_B").matmul(p.at("lora_A"));  // (out, in)
      torch::Tensor g = p.at("lora_magnitude_vector") / w.norm(2, 1);
      return x.matmul(w.t()) * g + b;
    }
    case MethodKind::kAdaLora: {
      const double s = 8.0 / (kRank + 1e-5);
      torch::Tensor delta = p.at("lora_B").matmul(p.at("lora_A") * p.at("lora_E"));  // (out, in)
      return x.matmul(wc + s * delta.t()) + b;
    }
    case MethodKind::kHut: {
      torch::Tensor m_a = p.at("hut_A").mean(1), m_b = p.at("hut_B").mean(0);
      return p.at("hut_gamma") * ((x * m_a).matmul(wc) * m_b + b) + p.at("hut_beta");
    }
    case MethodKind::kAdaDhp:
      return (x * p.at("adadhp_l")).matmul(wc) * p.at("adadhp_r") + b;
  }
  return {};
}

TEST_P(Gpt2MethodsTest, EveryConv1DModuleEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  Gpt2 model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  ASSERT_EQ((*peft)->module_names().size(), 8u);  // 4 per block, 2 blocks
  const auto& linears = (*peft)->linears();
  for (const std::string name : {"transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_proj",
                                 "transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_proj"}) {
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
    const torch::Tensor wc = conv_->at(name + ".weight").to(torch::kDouble);
    const torch::Tensor b = conv_->at(name + ".bias").to(torch::kDouble);
    torch::Tensor x = torch::randn({2, 5, wc.size(0)}, torch::kDouble);
    torch::Tensor expected = ClosedForm(method, p, x, wc, b);
    if (gated) {
      // h_i = base_i + S_i·Δ_i with S_i = 1{‖Δ_i‖ / ‖base_i‖ ≥ τ}; τ halfway between the 5th and
      // 6th smallest of the 10 ratios turns half the tokens off, none of them near the threshold.
      torch::Tensor base = x.matmul(wc) + b;
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
    EXPECT_GT((expected - (x.matmul(wc) + b)).abs().max().item<double>(), 1e-3)
        << "the perturbed adapter changes the output";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, Gpt2MethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

TEST_F(Gpt2AdapterFileTest, IsPeftsGpt2LayoutAndLoadsBack) {
  Gpt2 model = LoadDouble();
  torch::manual_seed(3);
  AdapterConfig c = Config(MethodKind::kLora, false);
  c.targets.target_modules = {"c_attn"};
  auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : (*peft)->TrainableTensors()) t.add_(torch::randn_like(t) * 0.3);
  }
  const fs::path out = *dir_ / "adapter";
  ASSERT_TRUE(adapters::SaveAdapter(**peft, out.string()).ok());
  auto config = nlohmann::json::parse(std::ifstream(out / "adapter_config.json"));
  EXPECT_EQ(config["fan_in_fan_out"], true);
  EXPECT_EQ(config["target_modules"], nlohmann::json::array({"c_attn"}));
  auto tensors = *adapters::LoadTensors((out / "adapter_model.safetensors").string());
  EXPECT_EQ(tensors.size(), 4u);
  EXPECT_EQ(tensors.at("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").sizes(),
            (std::vector<int64_t>{kRank, 64}));
  EXPECT_EQ(tensors.at("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight").sizes(),
            (std::vector<int64_t>{192, kRank}));
  auto read = adapters::ReadAdapterConfig(out.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->fan_in_fan_out);

  torch::Tensor ids = torch::tensor({{5, 17, 300, 42}}, torch::kLong);
  torch::NoGradGuard no_grad;
  torch::Tensor trained = model->forward(ids, {});
  Gpt2 fresh = LoadDouble();
  auto loaded = adapters::LoadAdapter(fresh.get(), out.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // The file holds fp32: the reloaded adapter is the trained one rounded to float.
  EXPECT_LT((fresh->forward(ids, {}) - trained).abs().max().item<double>(), 1e-5);
  EXPECT_GT((fresh->forward(ids, {}) - LoadDouble()->forward(ids, {})).abs().max().item<double>(),
            1e-4);
}

}  // namespace
}  // namespace peftd::model
