// FrozenLinear and LoraLinear (one autograd node each, raw GEMMs) against F::linear compositions
// in double precision: values and gradients, 3-D inputs, with and without bias, and inputs that
// need no gradient.
#include "adapters/linear_ops.h"

#include <gtest/gtest.h>

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;
const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

TEST(LinearOps, FrozenLinearEqualsFLinearWithAndWithoutBias) {
  torch::manual_seed(1);
  torch::Tensor w = torch::randn({5, 3}, kDouble), b = torch::randn({5}, kDouble);
  for (bool with_bias : {false, true}) {
    torch::Tensor bias = with_bias ? b : torch::Tensor();
    torch::Tensor x1 = torch::randn({2, 4, 3}, kDouble).requires_grad_(true);
    torch::Tensor x2 = x1.detach().clone().requires_grad_(true);
    torch::Tensor g = torch::randn({2, 4, 5}, kDouble);
    torch::Tensor ours = FrozenLinear(x1, w, bias), ref = F::linear(x2, w, bias);
    (ours * g).sum().backward();
    (ref * g).sum().backward();
    EXPECT_TRUE(torch::allclose(ours, ref, 1e-13, 1e-13));
    EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad(), 1e-13, 1e-13));
  }
}

TEST(LinearOps, LoraLinearEqualsTheComposition) {
  torch::manual_seed(2);
  torch::Tensor w = torch::randn({6, 4}, kDouble), bias = torch::randn({6}, kDouble);
  torch::Tensor a0 = torch::randn({2, 4}, kDouble), b0 = torch::randn({6, 2}, kDouble);
  torch::Tensor x0 = torch::randn({3, 5, 4}, kDouble), g = torch::randn({3, 5, 6}, kDouble);
  for (bool x_grad : {true, false}) {
    auto leaf = [](const torch::Tensor& t, bool grad) {
      return t.detach().clone().requires_grad_(grad);
    };
    torch::Tensor x1 = leaf(x0, x_grad), a1 = leaf(a0, true), b1 = leaf(b0, true);
    torch::Tensor x2 = leaf(x0, x_grad), a2 = leaf(a0, true), b2 = leaf(b0, true);
    torch::Tensor ours = LoraLinear(x1, w, bias, a1, b1, 0.75);
    torch::Tensor ref = F::linear(x2, w, bias) + 0.75 * F::linear(F::linear(x2, a2), b2);
    (ours * g).sum().backward();
    (ref * g).sum().backward();
    EXPECT_TRUE(torch::allclose(ours, ref, 1e-13, 1e-13));
    EXPECT_TRUE(torch::allclose(a1.grad(), a2.grad(), 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(b1.grad(), b2.grad(), 1e-12, 1e-12));
    if (x_grad) {
      EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad(), 1e-12, 1e-12));
    } else {
      EXPECT_FALSE(x1.grad().defined());
    }
  }
}

// The fused nodes are what a float32 CPU model records (a silent fallback would only be slower).
TEST(LinearOps, Float32CpuRecordsOneNodePerProjection) {
  torch::Tensor w = torch::randn({6, 4}), a = torch::randn({2, 4}).requires_grad_(true);
  torch::Tensor b = torch::zeros({6, 2}).requires_grad_(true);
  torch::Tensor x = torch::randn({3, 4}).requires_grad_(true);
  EXPECT_NE(FrozenLinear(x, w).grad_fn()->name().find("FrozenLinearFunction"), std::string::npos);
  EXPECT_NE(LoraLinear(x, w, {}, a, b, 2.0).grad_fn()->name().find("LoraLinearFunction"),
            std::string::npos);
}

TEST(LinearOps, TrainableWeightFallsBackToAutograd) {
  torch::Tensor w = torch::randn({3, 2}, kDouble).requires_grad_(true);
  torch::Tensor x = torch::randn({4, 2}, kDouble);
  FrozenLinear(x, w).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(torch::allclose(w.grad(), x.sum(0).expand({3, 2})));
}

}  // namespace
}  // namespace peftd::adapters
