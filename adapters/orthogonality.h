// AdaLoRA's orthogonality penalty (METHODS.md, AdaLoRA): weight · mean over all A's and B's of
// ‖P − I‖_F, P = A·Aᵀ for each A (R, in) and P = Bᵀ·B for each B (out, R), as one autograd node
// over every module. Gradient: ∂‖AAᵀ − I‖/∂A = 2(AAᵀ − I)·A / ‖AAᵀ − I‖, and B·2(BᵀB − I) / ‖·‖
// for B (zero where the norm is zero). The ATen composition records about twelve nodes per module
// and step.
#ifndef PEFTD_ADAPTERS_ORTHOGONALITY_H_
#define PEFTD_ADAPTERS_ORTHOGONALITY_H_

#include <torch/torch.h>

#include <vector>

namespace peftd::adapters {

// `a` and `b`: each module's A and B (same count). Returns a 0-dim tensor:
// weight / (2·modules) · Σ (‖AAᵀ − I‖_F + ‖BᵀB − I‖_F). Undefined when there are no modules.
torch::Tensor OrthogonalityPenalty(const std::vector<torch::Tensor>& a,
                                   const std::vector<torch::Tensor>& b, double weight);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_ORTHOGONALITY_H_
