// The element-wise sensitivity averages AdaLoRA's rank allocator and AdaDHP's module selector
// update after every backward (METHODS.md, AdaLoRA "Importance"):
//   I = |p ⊙ ∇p|,  Ī ← β1·Ī + (1−β1)·I,  Ū ← β2·Ū + (1−β2)·|I − Ī|  (with the new Ī).
// One loop over contiguous CPU buffers instead of eight ATen kernels and two temporaries per
// tensor and step; other devices and layouts take the ATen composition.
#ifndef PEFTD_ADAPTERS_IMPORTANCE_EMA_H_
#define PEFTD_ADAPTERS_IMPORTANCE_EMA_H_

#include <torch/torch.h>

namespace peftd::adapters {

// Updates `ipt` (Ī) and `unc` (Ū), both shaped like `param`, in place. `grad` is param's gradient.
void UpdateImportanceEma(const torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& ipt,
                         torch::Tensor& unc, double beta1, double beta2);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_IMPORTANCE_EMA_H_
