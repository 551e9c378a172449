#include "adapters/norm_probe.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "adapters/linear_ops.h"

namespace peftd::adapters {
namespace {

constexpr double kNormFloor = 1e-12;  // the gate's guard on ‖base_i‖ (METHODS.md)

}  // namespace

NormProbe::NormProbe(Adapter* method, std::shared_ptr<const NormProbeContext> context)
    : method_(method), context_(std::move(context)) {}

bool NormProbe::Due(bool training) const {
  return training && torch::GradMode::is_enabled() && observed_arming_ != context_->arming;
}

void NormProbe::Observe(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) {
  observed_arming_ = context_->arming;
  torch::NoGradGuard no_grad;
  const bool was_training = method_->is_training();
  method_->train(false);  // no dropout: the probe draws no random numbers
  const torch::Tensor rows = x.reshape({-1, x.size(-1)});
  const torch::Tensor base = FrozenLinear(rows, weight, bias);
  const torch::Tensor delta = method_->Delta(rows, base, weight, bias);
  method_->train(was_training);
  const torch::Tensor delta_norm = delta.to(torch::kDouble).norm(2, -1);
  const torch::Tensor base_norm = base.to(torch::kDouble).norm(2, -1).clamp_min(kNormFloor);
  torch::Tensor mask;
  const torch::Tensor& token_mask = context_->tokens ? context_->tokens->token_mask : mask;
  if (token_mask.defined() && token_mask.numel() == rows.size(0)) {
    mask = token_mask.reshape({-1}).to(delta_norm.device(), torch::kDouble);
  } else {
    mask = torch::ones_like(delta_norm);
  }
  sum_relative_ += (delta_norm / base_norm * mask).sum().item<double>();
  sum_absolute_ += (delta_norm * mask).sum().item<double>();
  tokens_ += static_cast<int64_t>(mask.sum().item<double>());
}

NormProbe::Means NormProbe::Read() const {
  Means m;
  m.tokens = tokens_;
  if (tokens_ > 0) {
    m.relative = sum_relative_ / static_cast<double>(tokens_);
    m.absolute = sum_absolute_ / static_cast<double>(tokens_);
  }
  return m;
}

torch::Tensor NormProbe::State() const {
  return torch::tensor({sum_relative_, sum_absolute_, static_cast<double>(tokens_)},
                       torch::kDouble);
}

absl::Status NormProbe::LoadState(const torch::Tensor& state) {
  if (state.numel() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("norm statistics: expected 3 values, got ", state.numel()));
  }
  const torch::Tensor s = state.to(torch::kCPU, torch::kDouble).contiguous();
  sum_relative_ = s[0].item<double>();
  sum_absolute_ = s[1].item<double>();
  tokens_ = static_cast<int64_t>(s[2].item<double>());
  return absl::OkStatus();
}

}  // namespace peftd::adapters
