// ScaledLinear (AdaDHP) and HutLinear (HUT) as one autograd node each, against their ATen
// compositions in double precision: values and every gradient, with and without bias, and inputs
// that need no gradient.
#include "adapters/scaled_linear.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "adapters/hut.h"
#include "adapters/linear.h"

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;
const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

torch::Tensor Leaf(const torch::Tensor& t, bool grad = true) {
  return t.detach().clone().requires_grad_(grad);
}

TEST(ScaledLinear, EqualsTheComposition) {
  torch::manual_seed(4);
  torch::Tensor w = torch::randn({6, 4}, kDouble), x0 = torch::randn({3, 5, 4}, kDouble);
  torch::Tensor l0 = torch::randn({4}, kDouble), r0 = torch::randn({6}, kDouble);
  torch::Tensor c0 = torch::randn({6}, kDouble), g = torch::randn({3, 5, 6}, kDouble);
  torch::Tensor x1 = Leaf(x0), l1 = Leaf(l0), r1 = Leaf(r0), c1 = Leaf(c0);
  torch::Tensor x2 = Leaf(x0), l2 = Leaf(l0), r2 = Leaf(r0), c2 = Leaf(c0);
  torch::Tensor ours = ScaledLinear(x1, w, l1, r1, c1);
  torch::Tensor ref = F::linear(x2 * l2, w) * r2 + c2;
  EXPECT_NE(ours.grad_fn()->name().find("ScaledLinearFunction"), std::string::npos);
  (ours * g).sum().backward();
  (ref * g).sum().backward();
  EXPECT_TRUE(torch::allclose(ours, ref, 1e-13, 1e-13));
  const std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs = {
      {x1, x2}, {l1, l2}, {r1, r2}, {c1, c2}};
  for (const auto& [a, b] : pairs) {
    EXPECT_TRUE(torch::allclose(a.grad(), b.grad(), 1e-12, 1e-12));
  }
}

TEST(ScaledLinear, FrozenShiftAndInputGetNoGradient) {
  torch::manual_seed(5);
  torch::Tensor w = torch::randn({5, 3}, kDouble), x = torch::randn({4, 3}, kDouble);
  torch::Tensor c = torch::randn({5}, kDouble);
  torch::Tensor l1 = Leaf(torch::randn({3}, kDouble)), r1 = Leaf(torch::randn({5}, kDouble));
  torch::Tensor l2 = Leaf(l1), r2 = Leaf(r1);
  ScaledLinear(x, w, l1, r1, c).sum().backward();
  (F::linear(x * l2, w) * r2 + c).sum().backward();
  EXPECT_TRUE(torch::allclose(l1.grad(), l2.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(r1.grad(), r2.grad(), 1e-12, 1e-12));
  EXPECT_FALSE(x.grad().defined());
}

// METHODS.md, HUT: h = γ ⊙ ((x ⊙ m_A)·W0ᵀ ⊙ m_B + b0) + β.
TEST(HutLinear, EqualsTheCompositionWithAndWithoutBias) {
  torch::manual_seed(6);
  const int64_t in = 4, out = 6, rank = 3;
  torch::Tensor w = torch::randn({out, in}, kDouble), b = torch::randn({out}, kDouble);
  torch::Tensor a0 = torch::randn({in, rank}, kDouble), b0 = torch::randn({rank, out}, kDouble);
  torch::Tensor gamma0 = torch::randn({out}, kDouble), beta0 = torch::randn({out}, kDouble);
  torch::Tensor x0 = torch::randn({2, 5, in}, kDouble), g = torch::randn({2, 5, out}, kDouble);
  for (bool with_bias : {false, true}) {
    for (bool x_grad : {true, false}) {
      const torch::Tensor bias = with_bias ? b : torch::Tensor();
      torch::Tensor x1 = Leaf(x0, x_grad), a1 = Leaf(a0), m1 = Leaf(b0), g1 = Leaf(gamma0),
                    be1 = Leaf(beta0);
      torch::Tensor x2 = Leaf(x0, x_grad), a2 = Leaf(a0), m2 = Leaf(b0), g2 = Leaf(gamma0),
                    be2 = Leaf(beta0);
      torch::Tensor ours = HutLinear(x1, w, bias, a1, m1, g1, be1);
      torch::Tensor inner = F::linear(x2 * a2.mean(1), w) * m2.mean(0);
      if (with_bias) inner = inner + bias;
      torch::Tensor ref = g2 * inner + be2;
      EXPECT_NE(ours.grad_fn()->name().find("HutLinearFunction"), std::string::npos);
      (ours * g).sum().backward();
      (ref * g).sum().backward();
      EXPECT_TRUE(torch::allclose(ours, ref, 1e-12, 1e-12));
      const std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs = {
          {a1, a2}, {m1, m2}, {g1, g2}, {be1, be2}};
      for (const auto& [p, q] : pairs) {
        ASSERT_TRUE(p.grad().defined());
        EXPECT_TRUE(torch::allclose(p.grad(), q.grad(), 1e-11, 1e-11));
      }
      if (x_grad) {
        EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad(), 1e-11, 1e-11));
      } else {
        EXPECT_FALSE(x1.grad().defined());
      }
    }
  }
}

// A HUT layer's forward is one node whose inputs are the parameters themselves: no mean, product
// or shift nodes between them and the GEMM.
TEST(HutLinear, HutAdapterRecordsOneNode) {
  torch::manual_seed(7);
  Linear layer(8, 6, /*with_bias=*/true);
  {
    torch::NoGradGuard no_grad;
    layer->weight.normal_();
    layer->bias.normal_();
  }
  auto hut = std::make_shared<HutAdapter>(*layer, HutOptions{.r = 4});
  layer->Attach(hut, "hut");
  torch::Tensor h = layer->forward(torch::randn({3, 8}));
  ASSERT_TRUE(h.grad_fn());
  EXPECT_NE(h.grad_fn()->name().find("HutLinearFunction"), std::string::npos);
  int leaves = 0;
  for (const auto& edge : h.grad_fn()->next_edges()) {
    if (!edge.function) continue;
    EXPECT_NE(edge.function->name().find("AccumulateGrad"), std::string::npos)
        << edge.function->name();
    ++leaves;
  }
  EXPECT_EQ(leaves, 4);  // M_A, M_B, γ, β
}

}  // namespace
}  // namespace peftd::adapters
