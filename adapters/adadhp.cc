#include "adapters/adadhp.h"

#include "adapters/linear_ops.h"
#include "adapters/scaled_linear.h"
#include "adapters/tensor_check.h"

namespace peftd::adapters {

namespace F = torch::nn::functional;

AdaDhpAdapter::AdaDhpAdapter(const LinearImpl& base) {
  const auto opts = base.weight.options().requires_grad(false);
  adadhp_l = register_parameter("adadhp_l", torch::ones({base.in_features()}, opts));
  adadhp_r = register_parameter("adadhp_r", torch::ones({base.out_features()}, opts));
}

torch::Tensor AdaDhpAdapter::Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                     const torch::Tensor& bias) {
  if (frozen_) return FrozenLinear(x, weight, bias);  // exactly the base layer
  return ScaledLinear(x, weight, adadhp_l, adadhp_r, bias.defined() ? bias : ZeroBias(weight));
}

torch::Tensor AdaDhpAdapter::Delta(const torch::Tensor& x, const torch::Tensor& base,
                                   const torch::Tensor& weight, const torch::Tensor& bias) {
  if (frozen_) return torch::zeros_like(base);
  return Forward(x, weight, bias) - base;
}

const torch::Tensor& AdaDhpAdapter::ZeroBias(const torch::Tensor& weight) {
  if (!zero_bias_.defined() || zero_bias_.size(0) != weight.size(0) ||
      zero_bias_.scalar_type() != weight.scalar_type() || zero_bias_.device() != weight.device()) {
    zero_bias_ = torch::zeros({weight.size(0)}, weight.options().requires_grad(false));
  }
  return zero_bias_;
}

void AdaDhpAdapter::Freeze() {
  torch::NoGradGuard no_grad;
  for (torch::Tensor* t : {&adadhp_l, &adadhp_r}) {
    t->fill_(1.0);
    t->requires_grad_(false);
    t->mutable_grad() = torch::Tensor();
  }
  frozen_ = true;
}

std::map<std::string, torch::Tensor> AdaDhpAdapter::ExportTensors() const {
  return {{"adadhp_l", ExportCopy(adadhp_l)}, {"adadhp_r", ExportCopy(adadhp_r)}};
}

absl::Status AdaDhpAdapter::ImportTensors(const std::map<std::string, torch::Tensor>& tensors) {
  RETURN_IF_ERROR(ImportInto(tensors, "adadhp_l", adadhp_l));
  return ImportInto(tensors, "adadhp_r", adadhp_r);
}

std::pair<torch::Tensor, torch::Tensor> AdaDhpAdapter::Merged(const torch::Tensor& weight,
                                                              const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  return {adadhp_r.unsqueeze(1) * weight * adadhp_l.unsqueeze(0), bias};
}

std::pair<torch::Tensor, torch::Tensor> AdaDhpAdapter::Unmerged(const torch::Tensor& weight,
                                                                const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  return {weight / adadhp_r.unsqueeze(1) / adadhp_l.unsqueeze(0), bias};
}

int64_t AdaDhpAdapter::NumTrainable() const { return adadhp_l.numel() + adadhp_r.numel(); }

}  // namespace peftd::adapters
