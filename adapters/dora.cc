#include "adapters/dora.h"

#include "absl/strings/str_cat.h"
#include "adapters/dora_linear.h"
#include "adapters/linear_ops.h"
#include "adapters/tensor_check.h"

namespace peftd::adapters {

namespace F = torch::nn::functional;

DoraAdapter::DoraAdapter(const LinearImpl& base, const LoraOptions& options)
    : LoraAdapter(base, options) {
  torch::NoGradGuard no_grad;
  // ‖W0 + s·B·A‖_row with B = 0 is ‖W0‖_row.
  magnitude =
      register_parameter("lora_magnitude_vector", DoraRowNorms(base.weight).detach().clone());
}

torch::Tensor DoraAdapter::Gain(const torch::Tensor& weight) const {
  torch::Tensor norm;
  {
    torch::NoGradGuard no_grad;
    // W0 + s·B·A as one addmm (DeltaWeight() and the sum would be three kernels).
    norm = DoraRowNorms(torch::addmm(weight, lora_B, lora_A, /*beta=*/1, /*alpha=*/scale_))
               .clamp_min_(kDoraMinNorm);
  }
  return magnitude / norm;
}

torch::Tensor DoraAdapter::Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                   const torch::Tensor& bias) {
  if (options_.dropout > 0 && is_training()) {
    const auto out_shape = OutputShape(x, weight.size(0));
    torch::Tensor x2d = x.reshape({-1, x.size(-1)});
    const torch::Tensor g = Gain(weight);
    torch::Tensor h = FrozenLinear(x2d, weight, bias);
    torch::Tensor xd = F::dropout(x2d, F::DropoutFuncOptions().p(options_.dropout).training(true));
    torch::Tensor t = F::linear(xd, lora_A).mul_(scale_);
    torch::Tensor y = FrozenLinear(xd, weight);
    // base + (g − 1) ⊙ x̃W0ᵀ + g ⊙ s·x̃AᵀBᵀ
    return (h + (g - 1) * y + g * F::linear(t, lora_B)).view(out_shape);
  }
  // Without dropout: h = g ⊙ (x·W0ᵀ + s·x·Aᵀ·Bᵀ) + b0, norm and gain included, as one node.
  return DoraLinear(x, weight, bias, lora_A, lora_B, magnitude, scale_, kDoraMinNorm);
}

torch::Tensor DoraAdapter::FromBase(const torch::Tensor& x, const torch::Tensor& base,
                                    const torch::Tensor& weight, const torch::Tensor& bias) {
  if (options_.dropout > 0 && is_training()) return base + Delta(x, base, weight, bias);
  // As Forward without dropout, with x·W0ᵀ = base − b0.
  return DoraFromBase(x, base, weight, bias, lora_A, lora_B, magnitude, scale_, kDoraMinNorm);
}

torch::Tensor DoraAdapter::Delta(const torch::Tensor& x, const torch::Tensor& base,
                                 const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!(options_.dropout > 0 && is_training())) {
    return DoraDelta(x, base.reshape(OutputShape(x, weight.size(0))), weight, bias, lora_A, lora_B,
                     magnitude, scale_, kDoraMinNorm);
  }
  const auto out_shape = OutputShape(x, weight.size(0));
  torch::Tensor x2d = x.reshape({-1, x.size(-1)});
  torch::Tensor base2d = base.reshape({-1, weight.size(0)});
  const torch::Tensor g = Gain(weight);
  torch::Tensor y;  // x̃·W0ᵀ
  torch::Tensor xd = x2d;
  if (options_.dropout > 0 && is_training()) {
    xd = F::dropout(x2d, F::DropoutFuncOptions().p(options_.dropout).training(true));
    y = FrozenLinear(xd, weight);
  } else {
    y = bias.defined() ? base2d - bias : base2d;
  }
  torch::Tensor lora = F::linear(F::linear(xd, lora_A).mul_(scale_), lora_B);
  return ((g - 1) * y + g * lora).view(out_shape);
}

std::map<std::string, torch::Tensor> DoraAdapter::ExportTensors() const {
  auto out = LoraAdapter::ExportTensors();
  out["lora_magnitude_vector"] = ExportCopy(magnitude);
  return out;
}

absl::Status DoraAdapter::ImportTensors(const std::map<std::string, torch::Tensor>& tensors) {
  RETURN_IF_ERROR(LoraAdapter::ImportTensors(tensors));
  return ImportInto(tensors, "lora_magnitude_vector", magnitude);
}

std::pair<torch::Tensor, torch::Tensor> DoraAdapter::Merged(const torch::Tensor& weight,
                                                            const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  merged_gain_ = Gain(weight).detach().clone();
  return {merged_gain_.unsqueeze(1) * (weight + DeltaWeight()), bias};
}

std::pair<torch::Tensor, torch::Tensor> DoraAdapter::Unmerged(const torch::Tensor& weight,
                                                              const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(merged_gain_.defined(), "DoRA: Unmerged without a prior Merged");
  return {weight / merged_gain_.unsqueeze(1) - DeltaWeight(), bias};
}

int64_t DoraAdapter::NumTrainable() const {
  return LoraAdapter::NumTrainable() + magnitude.numel();
}

}  // namespace peftd::adapters
