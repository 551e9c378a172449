// DoRA's one-node layer, layer-from-base and change (adapters/dora_linear.h) against the ATen
// composition of METHODS.md in double precision: values and the gradients of x, the base, A, B
// and m, with and without bias; the row norm gets no gradient.
#include "adapters/dora_linear.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;
const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);
constexpr double kScale = 0.75, kFloor = 1e-12;

torch::Tensor Leaf(const torch::Tensor& t, bool grad = true) {
  return t.detach().clone().requires_grad_(grad);
}

struct Inputs {
  torch::Tensor w, bias, x, a, b, m, g;
};

Inputs MakeInputs(int seed) {
  torch::manual_seed(seed);
  Inputs in;
  in.w = torch::randn({6, 4}, kDouble);
  in.bias = torch::randn({6}, kDouble);
  in.x = torch::randn({2, 5, 4}, kDouble);
  in.a = torch::randn({3, 4}, kDouble);
  in.b = torch::randn({6, 3}, kDouble);
  in.m = torch::rand({6}, kDouble) + 0.5;
  in.g = torch::randn({2, 5, 6}, kDouble);
  return in;
}

// g = m / stopgrad(max(row_norm(W0 + s·B·A), floor)).
torch::Tensor Gain(const torch::Tensor& w, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& m) {
  torch::Tensor n = (w + kScale * b.matmul(a)).norm(2, 1).clamp_min(kFloor).detach();
  return m / n;
}

void ExpectClose(const torch::Tensor& ours, const torch::Tensor& ref, const std::string& what) {
  ASSERT_TRUE(ours.defined()) << what;
  ASSERT_TRUE(ref.defined()) << what;
  EXPECT_TRUE(torch::allclose(ours, ref, 1e-11, 1e-11)) << what;
}

TEST(DoraLinear, LayerEqualsTheComposition) {
  const Inputs in = MakeInputs(21);
  for (bool with_bias : {false, true}) {
    for (bool x_grad : {true, false}) {
      const torch::Tensor bias = with_bias ? in.bias : torch::Tensor();
      torch::Tensor x1 = Leaf(in.x, x_grad), a1 = Leaf(in.a), b1 = Leaf(in.b), m1 = Leaf(in.m);
      torch::Tensor x2 = Leaf(in.x, x_grad), a2 = Leaf(in.a), b2 = Leaf(in.b), m2 = Leaf(in.m);
      torch::Tensor ours = DoraLinear(x1, in.w, bias, a1, b1, m1, kScale, kFloor);
      torch::Tensor ref = (F::linear(x2, in.w) + kScale * F::linear(F::linear(x2, a2), b2)) *
                          Gain(in.w, a2, b2, m2);
      if (with_bias) ref = ref + bias;
      EXPECT_NE(ours.grad_fn()->name().find("DoraLinearFunction"), std::string::npos);
      (ours * in.g).sum().backward();
      (ref * in.g).sum().backward();
      ExpectClose(ours, ref, "h");
      ExpectClose(a1.grad(), a2.grad(), "dA");
      ExpectClose(b1.grad(), b2.grad(), "dB");
      ExpectClose(m1.grad(), m2.grad(), "dm");
      if (x_grad) {
        ExpectClose(x1.grad(), x2.grad(), "dx");
      } else {
        EXPECT_FALSE(x1.grad().defined());
      }
    }
  }
}

// From a base that carries its own gradient (the fused q/k/v GEMM's output), and the change alone
// (what the token gate adds): M = (g − 1) ⊙ (base − b0) + g ⊙ s·x·Aᵀ·Bᵀ.
TEST(DoraLinear, FromBaseAndDeltaEqualTheComposition) {
  const Inputs in = MakeInputs(22);
  for (bool delta : {false, true}) {
    for (bool with_bias : {false, true}) {
      const torch::Tensor bias = with_bias ? in.bias : torch::Tensor();
      torch::Tensor base0 = torch::randn({2, 5, 6}, kDouble);
      torch::Tensor x1 = Leaf(in.x), p1 = Leaf(base0), a1 = Leaf(in.a), b1 = Leaf(in.b),
                    m1 = Leaf(in.m);
      torch::Tensor x2 = Leaf(in.x), p2 = Leaf(base0), a2 = Leaf(in.a), b2 = Leaf(in.b),
                    m2 = Leaf(in.m);
      torch::Tensor ours = delta ? DoraDelta(x1, p1, in.w, bias, a1, b1, m1, kScale, kFloor)
                                 : DoraFromBase(x1, p1, in.w, bias, a1, b1, m1, kScale, kFloor);
      const torch::Tensor g = Gain(in.w, a2, b2, m2);
      const torch::Tensor y = with_bias ? p2 - bias : p2;
      const torch::Tensor lora = kScale * F::linear(F::linear(x2, a2), b2);
      torch::Tensor ref = delta ? (g - 1) * y + g * lora : (y + lora) * g;
      if (with_bias && !delta) ref = ref + bias;
      EXPECT_NE(ours.grad_fn()->name().find("DoraFromBaseFunction"), std::string::npos);
      (ours * in.g).sum().backward();
      (ref * in.g).sum().backward();
      const std::string what = delta ? "delta " : "from base ";
      ExpectClose(ours, ref, what + "value");
      ExpectClose(x1.grad(), x2.grad(), what + "dx");
      ExpectClose(p1.grad(), p2.grad(), what + "dbase");
      ExpectClose(a1.grad(), a2.grad(), what + "dA");
      ExpectClose(b1.grad(), b2.grad(), what + "dB");
      ExpectClose(m1.grad(), m2.grad(), what + "dm");
    }
  }
}

// A zero row of W0 + s·B·A: n is the floor, as the ATen composition clamps it.
TEST(DoraLinear, ZeroRowUsesTheFloor) {
  Inputs in = MakeInputs(23);
  in.w[2].zero_();
  in.b[2].zero_();
  torch::Tensor m1 = Leaf(in.m), m2 = Leaf(in.m);
  torch::Tensor ours = DoraLinear(in.x, in.w, {}, in.a, in.b, m1, kScale, kFloor);
  torch::Tensor ref = (F::linear(in.x, in.w) + kScale * F::linear(F::linear(in.x, in.a), in.b)) *
                      Gain(in.w, in.a, in.b, m2);
  EXPECT_TRUE(torch::isfinite(ours).all().item<bool>());
  ExpectClose(ours, ref, "h");
}

}  // namespace
}  // namespace peftd::adapters
