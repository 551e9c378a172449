#include "adapters/orthogonality.h"

#include <cmath>

#include "adapters/cpu_gemm.h"

namespace peftd::adapters {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// D = P − I for P = M·Mᵀ (rows = true, M (R, k)) or P = Mᵀ·M (rows = false, M (k, R)), into d
// (R, R); returns ‖D‖_F.
template <typename T>
double Residual(const T* m, int64_t rank, int64_t k, bool rows, T* d) {
  if (rows) {
    Gemm(false, true, rank, rank, k, T(1), m, k, m, k, T(0), d, rank);
  } else {
    Gemm(true, false, rank, rank, k, T(1), m, rank, m, rank, T(0), d, rank);
  }
  double sum = 0;
  for (int64_t i = 0; i < rank; ++i) {
    d[i * rank + i] -= T(1);
    for (int64_t j = 0; j < rank; ++j)
      sum += static_cast<double>(d[i * rank + j]) * d[i * rank + j];
  }
  return std::sqrt(sum);
}

// Inputs: every A, then every B, as one list.
struct OrthogonalityFunction : public torch::autograd::Function<OrthogonalityFunction> {
  static torch::Tensor forward(AutogradContext* ctx, torch::TensorList factors, double weight) {
    const int64_t modules = static_cast<int64_t>(factors.size()) / 2;
    const double coef = weight / (2.0 * static_cast<double>(modules));
    std::vector<torch::Tensor> saved;
    std::vector<double> norms;
    double total = 0;
    AT_DISPATCH_FLOATING_TYPES(factors[0].scalar_type(), "orthogonality", [&] {
      using T = scalar_t;
      for (size_t f = 0; f < factors.size(); ++f) {
        const torch::Tensor m = factors[f].contiguous();
        const bool is_a = static_cast<int64_t>(f) < modules;
        const int64_t rank = is_a ? m.size(0) : m.size(1);
        const int64_t k = is_a ? m.size(1) : m.size(0);
        torch::Tensor d = torch::empty({rank, rank}, m.options());
        const double norm = Residual<T>(m.data_ptr<T>(), rank, k, is_a, d.data_ptr<T>());
        total += norm;
        norms.push_back(norm);
        saved.push_back(m);
        saved.push_back(d);
      }
    });
    ctx->save_for_backward(saved);
    ctx->saved_data["norms"] = c10::List<double>(norms);
    ctx->saved_data["coef"] = coef;
    ctx->saved_data["modules"] = modules;
    return torch::full({}, total * coef, factors[0].options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::vector<double> norms = ctx->saved_data["norms"].toDoubleVector();
    const double coef = ctx->saved_data["coef"].toDouble();
    const int64_t modules = ctx->saved_data["modules"].toInt();
    const double go = grads[0].item<double>();  // a 0-dim gradient: one read per step
    variable_list result(norms.size() + 1);
    AT_DISPATCH_FLOATING_TYPES(saved[0].scalar_type(), "orthogonality_backward", [&] {
      using T = scalar_t;
      for (size_t f = 0; f < norms.size(); ++f) {
        if (!ctx->needs_input_grad(f)) continue;
        const torch::Tensor &m = saved[2 * f], &d = saved[2 * f + 1];
        // The GEMM below writes every entry (β = 0): zeros only for an exactly orthogonal factor.
        torch::Tensor dm = norms[f] > 0 ? torch::empty(m.sizes(), m.options())
                                        : torch::zeros(m.sizes(), m.options());
        if (norms[f] > 0) {
          const bool is_a = static_cast<int64_t>(f) < modules;
          const int64_t rank = is_a ? m.size(0) : m.size(1);
          const int64_t k = is_a ? m.size(1) : m.size(0);
          const T scale = static_cast<T>(2.0 * go * coef / norms[f]);
          if (is_a) {  // 2·D·A
            Gemm(false, false, rank, k, rank, scale, d.data_ptr<T>(), rank, m.data_ptr<T>(), k,
                 T(0), dm.data_ptr<T>(), k);
          } else {  // 2·B·D
            Gemm(false, false, k, rank, rank, scale, m.data_ptr<T>(), rank, d.data_ptr<T>(), rank,
                 T(0), dm.data_ptr<T>(), rank);
          }
        }
        result[f] = dm;
      }
    });
    return result;
  }
};

}  // namespace

torch::Tensor OrthogonalityPenalty(const std::vector<torch::Tensor>& a,
                                   const std::vector<torch::Tensor>& b, double weight) {
  if (a.empty()) return {};
  std::vector<torch::Tensor> factors(a.begin(), a.end());
  factors.insert(factors.end(), b.begin(), b.end());
  bool covered = true;
  for (const auto& t : factors) {
    covered = covered && GemmCovers(t) && t.scalar_type() == factors[0].scalar_type();
  }
  if (covered) return OrthogonalityFunction::apply(torch::TensorList(factors), weight);
  torch::Tensor total = torch::zeros({}, a[0].options().requires_grad(false));
  for (size_t i = 0; i < a.size(); ++i) {
    const int64_t r = a[i].size(0);
    torch::Tensor eye = torch::eye(r, a[i].options().requires_grad(false));
    total = total + (a[i].matmul(a[i].t()) - eye).norm() + (b[i].t().matmul(b[i]) - eye).norm();
  }
  return total * (weight / (2.0 * static_cast<double>(a.size())));
}

}  // namespace peftd::adapters
