// The projections of a frozen base as single autograd nodes over raw GEMMs:
//   FrozenLinear: y = x·Wᵀ + b, backward dx = dy·W (W and b never get a gradient);
//   LoraLinear:   y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, backward
//                 u = dy·B, dx = dy·W + s·u·A, dA = s·uᵀ·x, dB = s·dyᵀ·(x·Aᵀ).
// The ATen composition (matmul with its reshapes and transposes, addmm, views) records four to
// eight autograd nodes per projection; one node per projection is what a small model needs.
// Off the CPU, for other dtypes or when W requires a gradient, both fall back to F::linear.
#ifndef PEFTD_ADAPTERS_LINEAR_OPS_H_
#define PEFTD_ADAPTERS_LINEAR_OPS_H_

#include <torch/torch.h>

namespace peftd::adapters {

// x (..., in), weight (out, in), bias (out) or undefined. Returns (..., out).
torch::Tensor FrozenLinear(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias = {});

// The same plus the LoRA update of lora_a (r, in) and lora_b (out, r) scaled by `scale`.
torch::Tensor LoraLinear(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, const torch::Tensor& lora_a,
                         const torch::Tensor& lora_b, double scale);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_LINEAR_OPS_H_
