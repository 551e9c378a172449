// AdaLoRA's orthogonality penalty as one node against its ATen composition (METHODS.md: the plain
// Frobenius norm of P − I, averaged over every A and B, times the weight): value and gradients in
// double precision, and a factor with P = I exactly (the norm's gradient is zero there).
#include "adapters/orthogonality.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace peftd::adapters {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

torch::Tensor Reference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                        double weight) {
  torch::Tensor total = torch::zeros({}, kDouble);
  for (size_t i = 0; i < a.size(); ++i) {
    torch::Tensor eye = torch::eye(a[i].size(0), kDouble);
    total = total + (a[i].matmul(a[i].t()) - eye).norm() + (b[i].t().matmul(b[i]) - eye).norm();
  }
  return total * (weight / (2.0 * static_cast<double>(a.size())));
}

TEST(Orthogonality, OneNodeEqualsTheComposition) {
  torch::manual_seed(11);
  std::vector<torch::Tensor> a1, b1, a2, b2;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{8, 3}, {5, 2}, {6, 4}};  // (in|out, R)
  for (const auto& [k, r] : shapes) {
    torch::Tensor a = torch::randn({r, k}, kDouble), b = torch::randn({k, r}, kDouble);
    a1.push_back(a.clone().requires_grad_(true));
    a2.push_back(a.clone().requires_grad_(true));
    b1.push_back(b.clone().requires_grad_(true));
    b2.push_back(b.clone().requires_grad_(true));
  }
  // Orthonormal rows: A·Aᵀ = I, a zero residual.
  {
    torch::NoGradGuard no_grad;
    torch::Tensor q = std::get<0>(torch::linalg::qr(torch::randn({8, 3}, kDouble)));
    a1[0].copy_(q.t());
    a2[0].copy_(q.t());
  }
  torch::Tensor ours = OrthogonalityPenalty(a1, b1, 0.5);
  torch::Tensor ref = Reference(a2, b2, 0.5);
  ASSERT_TRUE(ours.grad_fn());
  EXPECT_NE(ours.grad_fn()->name().find("OrthogonalityFunction"), std::string::npos);
  EXPECT_EQ(ours.grad_fn()->next_edges().size(), 6u);
  EXPECT_NEAR(ours.item<double>(), ref.item<double>(), 1e-12);
  (ours * 1.7).backward();
  (ref * 1.7).backward();
  for (size_t i = 0; i < a1.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a1[i].grad(), a2[i].grad(), 1e-10, 1e-10)) << i;
    EXPECT_TRUE(torch::allclose(b1[i].grad(), b2[i].grad(), 1e-10, 1e-10)) << i;
  }
}

TEST(Orthogonality, NoModulesIsUndefined) {
  EXPECT_FALSE(OrthogonalityPenalty({}, {}, 0.5).defined());
}

}  // namespace
}  // namespace peftd::adapters
