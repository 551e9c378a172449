#include "worker/train/adamw.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace peftd::train {

AdamW::AdamW(std::vector<TrainableTensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  exp_avg_.reserve(params_.size());
  exp_avg_sq_.reserve(params_.size());
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p.tensor, torch::MemoryFormat::Contiguous));
    exp_avg_sq_.push_back(torch::zeros_like(p.tensor, torch::MemoryFormat::Contiguous));
  }
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, step_count_);
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, step_count_);
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].tensor;
    const torch::Tensor& grad = p.grad();
    if (!p.requires_grad() || !grad.defined()) continue;
    if (params_[i].decay && options_.weight_decay != 0.0) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    torch::Tensor denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

void AdamW::ZeroGrad() {
  for (auto& p : params_) {
    torch::Tensor grad = p.tensor.mutable_grad();
    if (grad.defined()) grad.zero_();
  }
}

double AdamW::ClipGradNorm(double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  std::vector<torch::Tensor> grads;
  for (auto& p : params_) {
    const torch::Tensor& grad = p.tensor.grad();
    if (!p.tensor.requires_grad() || !grad.defined()) continue;
    grads.push_back(grad);
    norms.push_back(grad.norm(2).to(torch::kDouble));
  }
  if (norms.empty()) return 0.0;
  const double total = torch::stack(norms).norm(2).item<double>();
  if (max_norm > 0.0 && std::isfinite(total) && total > max_norm) {
    const double scale = max_norm / (total + 1e-6);
    for (auto& g : grads) g.mul_(scale);
  }
  return total;
}

std::map<std::string, torch::Tensor> AdamW::StateDict() const {
  std::map<std::string, torch::Tensor> state;
  for (size_t i = 0; i < params_.size(); ++i) {
    state[params_[i].name + ".exp_avg"] = exp_avg_[i];
    state[params_[i].name + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  state["__step__"] = torch::tensor({step_count_}, torch::kInt64);
  return state;
}

absl::Status AdamW::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  auto step = state.find("__step__");
  if (step == state.end()) return absl::InvalidArgumentError("optimizer state: missing __step__");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, dst] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &exp_avg_[i]},
                               {".exp_avg_sq", &exp_avg_sq_[i]}}) {
      const std::string key = params_[i].name + suffix;
      auto it = state.find(key);
      if (it == state.end()) return absl::InvalidArgumentError("optimizer state: missing " + key);
      if (!it->second.sizes().equals(dst->sizes())) {
        return absl::InvalidArgumentError(absl::StrCat("optimizer state: ", key, " has shape ",
                                                       c10::str(it->second.sizes()), ", expected ",
                                                       c10::str(dst->sizes())));
      }
      dst->copy_(it->second);
    }
  }
  step_count_ = step->second.item<int64_t>();
  return absl::OkStatus();
}

}  // namespace peftd::train
