#include "adapters/hut.h"

#include "adapters/scaled_linear.h"
#include "adapters/tensor_check.h"

namespace peftd::adapters {

namespace F = torch::nn::functional;

HutAdapter::HutAdapter(const LinearImpl& base, const HutOptions& options) : options_(options) {
  const auto opts = base.weight.options().requires_grad(false);
  const int64_t in = base.in_features(), out = base.out_features();
  hut_A = register_parameter("hut_A", torch::ones({in, options.r}, opts));
  hut_B = register_parameter("hut_B", torch::ones({options.r, out}, opts));
  hut_gamma = register_parameter("hut_gamma", torch::ones({out}, opts));
  hut_beta = register_parameter("hut_beta", torch::zeros({out}, opts));
}

torch::Tensor HutAdapter::Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                  const torch::Tensor& bias) {
  // One node: the means, γ and β are taken inside it (adapters/scaled_linear.h).
  return HutLinear(x, weight, bias, hut_A, hut_B, hut_gamma, hut_beta);
}

torch::Tensor HutAdapter::Delta(const torch::Tensor& x, const torch::Tensor& base,
                                const torch::Tensor& weight, const torch::Tensor& bias) {
  return Forward(x, weight, bias) - base;
}

std::map<std::string, torch::Tensor> HutAdapter::ExportTensors() const {
  return {{"hut_A", ExportCopy(hut_A)},
          {"hut_B", ExportCopy(hut_B)},
          {"hut_gamma", ExportCopy(hut_gamma)},
          {"hut_beta", ExportCopy(hut_beta)}};
}

absl::Status HutAdapter::ImportTensors(const std::map<std::string, torch::Tensor>& tensors) {
  RETURN_IF_ERROR(ImportInto(tensors, "hut_A", hut_A));
  RETURN_IF_ERROR(ImportInto(tensors, "hut_B", hut_B));
  RETURN_IF_ERROR(ImportInto(tensors, "hut_gamma", hut_gamma));
  return ImportInto(tensors, "hut_beta", hut_beta);
}

std::pair<torch::Tensor, torch::Tensor> HutAdapter::Merged(const torch::Tensor& weight,
                                                           const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor row = hut_gamma * hut_B.mean(0);
  torch::Tensor w = row.unsqueeze(1) * weight * hut_A.mean(1).unsqueeze(0);
  torch::Tensor b = bias.defined() ? hut_gamma * bias + hut_beta : hut_beta.clone();
  return {w, b};
}

std::pair<torch::Tensor, torch::Tensor> HutAdapter::Unmerged(const torch::Tensor& weight,
                                                             const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor row = hut_gamma * hut_B.mean(0);
  torch::Tensor w = weight / row.unsqueeze(1) / hut_A.mean(1).unsqueeze(0);
  // Merged() always produces a bias (β); when the layer had none, LinearImpl::Unmerge drops it.
  torch::Tensor b = (bias - hut_beta) / hut_gamma;
  return {w, b};
}

int64_t HutAdapter::NumTrainable() const {
  return hut_A.numel() + hut_B.numel() + hut_gamma.numel() + hut_beta.numel();
}

}  // namespace peftd::adapters
