// The projections of a frozen base as single autograd nodes over raw GEMMs:
//   FrozenLinear: y = x·Wᵀ + b, backward dx = dy·W (W and b never get a gradient);
//   LoraLinear:   y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, backward
//                 u = dy·B, dx = dy·W + s·u·A, dA = s·uᵀ·x, dB = s·dyᵀ·(x·Aᵀ).
// The ATen composition (matmul with its reshapes and transposes, addmm, views) records four to
// eight autograd nodes per projection; one node per projection is what a small model needs.
// Off the CPU, for other dtypes or when W requires a gradient, both fall back to F::linear.
// The scaled projections of HUT and AdaDHP are in adapters/scaled_linear.h.
#ifndef PEFTD_ADAPTERS_LINEAR_OPS_H_
#define PEFTD_ADAPTERS_LINEAR_OPS_H_

#include <torch/torch.h>

#include <vector>

namespace peftd::adapters {

// A low-rank update s·(x·Aᵀ)·Bᵀ of one projection: a (r, in), b (out, r). LoRA's (A, B), and
// AdaLoRA's (A ⊙ E, B): gradients reach E through the product.
struct LowRankUpdate {
  torch::Tensor a, b;
  double scale = 1.0;
};

// x (..., in), weight (out, in), bias (out) or undefined. Returns (..., out).
torch::Tensor FrozenLinear(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias = {});

// The same plus the LoRA update of lora_a (r, in) and lora_b (out, r) scaled by `scale`.
torch::Tensor LoraLinear(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, const torch::Tensor& lora_a,
                         const torch::Tensor& lora_b, double scale);

// The update alone, s·(x·Aᵀ)·Bᵀ, as one node (what the token gate adds to a base it already has).
torch::Tensor LowRankDelta(const torch::Tensor& x, const torch::Tensor& lora_a,
                           const torch::Tensor& lora_b, double scale);

// Several frozen projections of the same input as one GEMM over their concatenated weights
// (q, k, v; gate, up): weight (Σ out_i, in), bias (Σ out_i) or undefined, `outs` the out_i.
// `updates[i]`, when it holds a defined `a`, is the low-rank update of projection i, accumulated
// into its columns of the output. Returns one contiguous (..., out_i) tensor per projection.
// Backward: one GEMM for dx over the concatenated output gradient, plus each update's terms as
// LoraLinear's.
std::vector<torch::Tensor> FusedLinear(const torch::Tensor& x, const torch::Tensor& weight,
                                       const torch::Tensor& bias, const std::vector<int64_t>& outs,
                                       const std::vector<LowRankUpdate>& updates);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_LINEAR_OPS_H_
