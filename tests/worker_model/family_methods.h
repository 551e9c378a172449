// What every family's methods test (gpt2_, roberta_, deberta_, t5_methods_test) checks a module
// against: the adapter config of the test (rank 4, alpha 8, AdaLoRA's schedule), each method's
// closed form written from the checkpoint's weight in double precision (METHODS.md), a random
// perturbation of the adapter so that its change is not zero, and the gate's expected output
// with τ set to turn half the tokens off.
#ifndef PEFTD_TESTS_WORKER_MODEL_FAMILY_METHODS_H_
#define PEFTD_TESTS_WORKER_MODEL_FAMILY_METHODS_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "adapters/linear.h"
#include "adapters/peft_model.h"
#include "adapters/token_gate.h"

namespace peftd::model::testing_methods {

constexpr int64_t kRank = 4;

inline adapters::AdapterConfig MethodConfig(adapters::MethodKind method, bool gate,
                                            std::vector<std::string> targets) {
  adapters::AdapterConfig c;
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
  c.targets.target_modules = std::move(targets);
  return c;
}

// x·Wᵀ + b; b may be undefined (T5 has no biases).
inline torch::Tensor Affine(const torch::Tensor& x, const torch::Tensor& w,
                            const torch::Tensor& b) {
  torch::Tensor y = x.matmul(w.t());
  return b.defined() ? y + b : y;
}

// The method's h: x (N, in), W (out, in), b (out) or undefined; p the adapter's parameters by
// name.
inline torch::Tensor ClosedForm(adapters::MethodKind method,
                                const std::map<std::string, torch::Tensor>& p,
                                const torch::Tensor& x, const torch::Tensor& w,
                                const torch::Tensor& b) {
  using adapters::MethodKind;
  const torch::Tensor zero = torch::zeros({w.size(0)}, w.options());
  const torch::Tensor bias = b.defined() ? b : zero;
  switch (method) {
    case MethodKind::kLora: {
      const double s = 8.0 / kRank;
      return Affine(x, w + s * p.at("lora_B").matmul(p.at("lora_A")), b);
    }
    case MethodKind::kDora: {
      const double s = 8.0 / kRank;
      torch::Tensor v = w + s * p.at("lora_B").matmul(p.at("lora_A"));
      torch::Tensor g = p.at("lora_magnitude_vector") / v.norm(2, 1);
      return x.matmul(v.t()) * g + bias;
    }
    case MethodKind::kAdaLora: {
      const double s = 8.0 / (kRank + 1e-5);
      torch::Tensor delta = p.at("lora_B").matmul(p.at("lora_A") * p.at("lora_E"));
      return Affine(x, w + s * delta, b);
    }
    case MethodKind::kHut: {
      torch::Tensor m_a = p.at("hut_A").mean(1), m_b = p.at("hut_B").mean(0);
      return p.at("hut_gamma") * ((x * m_a).matmul(w.t()) * m_b + bias) + p.at("hut_beta");
    }
    case MethodKind::kAdaDhp:
      return (x * p.at("adadhp_l")).matmul(w.t()) * p.at("adadhp_r") + bias;
  }
  return {};
}

// Moves every parameter of the adapter inside `linear` by N(0, 0.3²), so that its change is not
// zero at initialisation, and returns the parameters by name.
inline std::map<std::string, torch::Tensor> PerturbAdapter(adapters::LinearImpl* linear) {
  adapters::Adapter* inner = adapters::PeftModel::Unwrap(linear->adapter().get());
  std::map<std::string, torch::Tensor> p;
  torch::NoGradGuard no_grad;
  for (auto& item : inner->named_parameters()) {
    item.value().add_(torch::randn_like(item.value()) * 0.3);
    p[item.key()] = item.value().detach();
  }
  return p;
}

// The gated module's expected output for 10 tokens: h_i = base_i + S_i·Δ_i with
// S_i = 1{‖Δ_i‖ / ‖base_i‖ ≥ τ}; τ halfway between the 5th and 6th smallest of the ratios turns
// half the tokens off, none of them near the threshold. Sets that τ on the gate of `linear`.
inline torch::Tensor GateHalfTheTokens(adapters::LinearImpl* linear, const torch::Tensor& base,
                                       const torch::Tensor& ungated) {
  torch::Tensor delta = ungated - base;
  torch::Tensor ratio = delta.norm(2, -1) / base.norm(2, -1).clamp_min(1e-12);
  torch::Tensor sorted = std::get<0>(ratio.flatten().sort());
  const double tau = (sorted[4].item<double>() + sorted[5].item<double>()) / 2;
  dynamic_cast<adapters::TokenGate*>(linear->adapter().get())->set_tau(tau);
  torch::Tensor on = ratio.ge(tau).unsqueeze(-1).to(torch::kDouble);
  EXPECT_GT(on.sum().item<double>(), 0);
  EXPECT_LT(on.sum().item<double>(), ratio.numel());
  return base + on * delta;
}

}  // namespace peftd::model::testing_methods

#endif  // PEFTD_TESTS_WORKER_MODEL_FAMILY_METHODS_H_
