// Projections of a frozen W whose input and output are scaled element-wise, as single autograd
// nodes with loops over contiguous buffers around one GEMM each way:
//   ScaledLinear: h = ((x ⊙ l)·Wᵀ) ⊙ r + c   (AdaDHP: l, r, c = b0)
//   HutLinear:    the same with HUT's parameters mapped inside the node (METHODS.md, HUT):
//                 l = mean_r M_A, r = γ ⊙ mean_r M_B, c = β + γ ⊙ b0.
// Their ATen compositions record three to ten nodes and a dozen kernels per module and step; on a
// small model that overhead is the step. Off the CPU or for other dtypes both fall back to the
// composition.
#ifndef PEFTD_ADAPTERS_SCALED_LINEAR_H_
#define PEFTD_ADAPTERS_SCALED_LINEAR_H_

#include <torch/torch.h>

namespace peftd::adapters {

// x (..., in), weight (out, in) frozen; l (in), r (out) and c (out) differentiable. Returns
// (..., out).
torch::Tensor ScaledLinear(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& l, const torch::Tensor& r, const torch::Tensor& c);

// HUT's layer h = γ ⊙ ((x ⊙ m_A)·W0ᵀ ⊙ m_B + b0) + β with m_A = hut_a.mean(1) (hut_a (in, R)),
// m_B = hut_b.mean(0) (hut_b (R, out)); bias (out) frozen or undefined. Gradients reach x, hut_a,
// hut_b, gamma and beta.
torch::Tensor HutLinear(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias, const torch::Tensor& hut_a,
                        const torch::Tensor& hut_b, const torch::Tensor& gamma,
                        const torch::Tensor& beta);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_SCALED_LINEAR_H_
