#include "adapters/importance_ema.h"

#include <cmath>

#include "adapters/cpu_gemm.h"

namespace peftd::adapters {

void UpdateImportanceEma(const torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& ipt,
                         torch::Tensor& unc, double beta1, double beta2) {
  torch::NoGradGuard no_grad;
  const bool loop = GemmCovers(param) && param.is_contiguous() && grad.is_contiguous() &&
                    ipt.is_contiguous() && unc.is_contiguous() && grad.device() == param.device() &&
                    grad.scalar_type() == param.scalar_type() &&
                    ipt.scalar_type() == param.scalar_type() &&
                    unc.scalar_type() == param.scalar_type() && ipt.device() == param.device() &&
                    unc.device() == param.device();
  if (!loop) {
    torch::Tensor i = (param * grad).abs();
    ipt.mul_(beta1).add_(i, 1 - beta1);
    unc.mul_(beta2).add_((i - ipt).abs(), 1 - beta2);
    return;
  }
  const int64_t n = param.numel();
  AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "importance_ema", [&] {
    using T = scalar_t;
    const T *p = param.data_ptr<T>(), *g = grad.data_ptr<T>();
    T *ip = ipt.data_ptr<T>(), *up = unc.data_ptr<T>();
    const T b1 = static_cast<T>(beta1), c1 = static_cast<T>(1 - beta1);
    const T b2 = static_cast<T>(beta2), c2 = static_cast<T>(1 - beta2);
    for (int64_t k = 0; k < n; ++k) {
      const T i = std::abs(p[k] * g[k]);
      ip[k] = ip[k] * b1 + i * c1;
      up[k] = up[k] * b2 + std::abs(i - ip[k]) * c2;
    }
  });
  // Written through their data: tell autograd and any saved copy that they changed.
  ipt.unsafeGetTensorImpl()->bump_version();
  unc.unsafeGetTensorImpl()->bump_version();
}

}  // namespace peftd::adapters
