// DoRA's layer without dropout (METHODS.md, DoRA) as one autograd node:
//   n = max(row_norm(W0 + s·B·A), floor)  (no gradient),  g = m / n,
//   h = g ⊙ (x·W0ᵀ + s·(x·Aᵀ)·Bᵀ) + b0,
// and the same from an already computed base = x·W0ᵀ + b0 (the fused q/k/v GEMM), where the
// bracket is base − b0 + s·(x·Aᵀ)·Bᵀ. Backward: dy = dh ⊙ g, dm = Σ_rows dh ⊙ y / n, then LoRA's
// terms with dy (u = dy·B, dA = s·uᵀ·x, dB = s·dyᵀ·(x·Aᵀ), dx = dy·W0 + s·u·A, or dbase = dy and
// dx = s·u·A), and for the change alone (DoraDelta) dbase = dM ⊙ (g − 1). The ATen composition
// records about ten nodes and fifteen kernels per module and step. Off the CPU or for other dtypes
// all three fall back to it.
#ifndef PEFTD_ADAPTERS_DORA_LINEAR_H_
#define PEFTD_ADAPTERS_DORA_LINEAR_H_

#include <torch/torch.h>

namespace peftd::adapters {

// ‖w[o, :]‖₂ for every row of w (out, in), without a gradient: the norms the nodes take of
// W0 + s·B·A, for the magnitude's initialisation and the merge to use the same numbers.
torch::Tensor DoraRowNorms(const torch::Tensor& w);

// x (..., in), weight (out, in) and bias (out, or undefined) frozen; lora_a (r, in), lora_b
// (out, r) and magnitude (out) differentiable; `min_norm` the floor of n. Returns (..., out).
torch::Tensor DoraLinear(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, const torch::Tensor& lora_a,
                         const torch::Tensor& lora_b, const torch::Tensor& magnitude, double scale,
                         double min_norm);

// The same given base (..., out) = x·W0ᵀ + b0, which receives a gradient.
torch::Tensor DoraFromBase(const torch::Tensor& x, const torch::Tensor& base,
                           const torch::Tensor& weight, const torch::Tensor& bias,
                           const torch::Tensor& lora_a, const torch::Tensor& lora_b,
                           const torch::Tensor& magnitude, double scale, double min_norm);

// DoRA's change alone, M = (g − 1) ⊙ (base − b0) + g ⊙ s·(x·Aᵀ)·Bᵀ (what the token gate adds to
// its base), one node likewise.
torch::Tensor DoraDelta(const torch::Tensor& x, const torch::Tensor& base,
                        const torch::Tensor& weight, const torch::Tensor& bias,
                        const torch::Tensor& lora_a, const torch::Tensor& lora_b,
                        const torch::Tensor& magnitude, double scale, double min_norm);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_DORA_LINEAR_H_
