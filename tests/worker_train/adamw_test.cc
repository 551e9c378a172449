#include "worker/train/adamw.h"

#include <gtest/gtest.h>

#include <cmath>

namespace peftd::train {
namespace {

// Reference: torch.optim.AdamW's update written out for one scalar.
struct ScalarAdamW {
  double p, m = 0, v = 0;
  int t = 0;
  void Step(double g, double lr, double b1, double b2, double eps, double wd) {
    ++t;
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double mhat = m / (1 - std::pow(b1, t));
    const double vhat_sqrt = std::sqrt(v) / std::sqrt(1 - std::pow(b2, t));
    p -= lr * mhat / (vhat_sqrt + eps);
  }
};

TEST(AdamW, MatchesTheReferenceUpdateOverSeveralSteps) {
  auto w = torch::tensor({0.5, -1.0}, torch::kDouble).requires_grad_(true);
  AdamWOptions o{.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
  AdamW opt({{"w", w, true}}, o);
  ScalarAdamW ref0{0.5}, ref1{-1.0};
  for (int step = 0; step < 5; ++step) {
    opt.ZeroGrad();
    auto loss = (w * w * w).sum();  // grad = 3 w^2
    loss.backward();
    const double g0 = 3 * ref0.p * ref0.p, g1 = 3 * ref1.p * ref1.p;
    const double lr = 0.01 * (step + 1);
    opt.Step(lr);
    ref0.Step(g0, lr, 0.9, 0.999, 1e-8, 0.1);
    ref1.Step(g1, lr, 0.9, 0.999, 1e-8, 0.1);
    EXPECT_NEAR(w[0].item<double>(), ref0.p, 1e-14);
    EXPECT_NEAR(w[1].item<double>(), ref1.p, 1e-14);
  }
  EXPECT_EQ(opt.step_count(), 5);
}

TEST(AdamW, SkipsFrozenTensorsAndNoDecayTensors) {
  auto a = torch::ones({2}, torch::kDouble).requires_grad_(true);
  auto b = torch::ones({2}, torch::kDouble).requires_grad_(true);
  AdamW opt({{"a", a, true}, {"b", b, false}}, {.weight_decay = 0.5});
  (a.sum() * 0 + b.sum() * 0).backward();  // zero gradients: only decay can move a tensor
  a.requires_grad_(false);                 // frozen after the backward (AdaDHP pruning)
  opt.Step(0.1);
  EXPECT_TRUE(torch::equal(a, torch::ones({2}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(b, torch::ones({2}, torch::kDouble)));
}

// Several tensors (decayed and not, interleaved) go through the flat buffers: each must move
// exactly as its own reference, the caller's handles see the update, and gradients accumulate
// into the flat storage across backwards.
TEST(AdamW, FlatBuffersUpdateEveryTensorAsItsOwnReference) {
  auto a = torch::tensor({0.5, -1.0}, torch::kDouble).requires_grad_(true);
  auto b = torch::tensor({{0.25}, {2.0}}, torch::kDouble).requires_grad_(true);
  auto c = torch::tensor({-0.75}, torch::kDouble).requires_grad_(true);
  torch::Tensor handle = b;  // an adapter's member keeps this handle
  AdamWOptions o{.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
  AdamW opt({{"a", a, true}, {"b", b, false}, {"c", c, true}}, o);
  std::vector<ScalarAdamW> ref = {{0.5}, {-1.0}, {0.25}, {2.0}, {-0.75}};
  const std::vector<double> wd = {0.1, 0.1, 0, 0, 0.1};
  for (int step = 0; step < 4; ++step) {
    opt.ZeroGrad();
    // Two backwards into the same step: grad = 3 p² + 2 p.
    (a * a * a).sum().add((b * b * b).sum()).add((c * c * c).sum()).backward();
    (a * a).sum().add((b * b).sum()).add((c * c).sum()).backward();
    for (size_t i = 0; i < ref.size(); ++i) {
      const double g = 3 * ref[i].p * ref[i].p + 2 * ref[i].p;
      ref[i].Step(g, 0.01, 0.9, 0.999, 1e-8, wd[i]);
    }
    opt.Step(0.01);
  }
  EXPECT_NEAR(a[0].item<double>(), ref[0].p, 1e-14);
  EXPECT_NEAR(a[1].item<double>(), ref[1].p, 1e-14);
  EXPECT_NEAR(handle[0][0].item<double>(), ref[2].p, 1e-14);
  EXPECT_NEAR(handle[1][0].item<double>(), ref[3].p, 1e-14);
  EXPECT_NEAR(c[0].item<double>(), ref[4].p, 1e-14);
}

// float32 on the CPU, as training runs: the one-loop update and gradient norm against the same
// double reference (the loop computes in float, so to float's precision).
TEST(AdamW, Float32FlatUpdateAndNormMatchTheReference) {
  auto a = torch::tensor({0.5f, -1.0f, 0.125f}, torch::kFloat).requires_grad_(true);
  auto b = torch::tensor({2.0f}, torch::kFloat).requires_grad_(true);
  AdamWOptions o{.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
  AdamW opt({{"a", a, true}, {"b", b, false}}, o);
  std::vector<ScalarAdamW> ref = {{0.5}, {-1.0}, {0.125}, {2.0}};
  const std::vector<double> wd = {0.1, 0.1, 0.1, 0};
  for (int step = 0; step < 4; ++step) {
    opt.ZeroGrad();
    (a * a * a).sum().add((b * b * b).sum()).backward();  // grad = 3 p²
    double sq = 0;
    for (const auto& r : ref) sq += 9 * std::pow(r.p, 4);
    EXPECT_NEAR(opt.ClipGradNorm(0), std::sqrt(sq), 1e-5 * std::sqrt(sq));
    for (size_t i = 0; i < ref.size(); ++i)
      ref[i].Step(3 * ref[i].p * ref[i].p, 0.01, 0.9, 0.999, 1e-8, wd[i]);
    opt.Step(0.01);
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a[i].item<double>(), ref[i].p, 1e-6);
  EXPECT_NEAR(b[0].item<double>(), ref[3].p, 1e-6);
}

TEST(AdamW, ClipGradNormScalesToMaxNorm) {
  auto w = torch::zeros({2}, torch::kDouble).requires_grad_(true);
  AdamW opt({{"w", w, true}}, {});
  (w * torch::tensor({3.0, 4.0}, torch::kDouble)).sum().backward();
  EXPECT_NEAR(opt.ClipGradNorm(1.0), 5.0, 1e-12);
  EXPECT_NEAR(w.grad().norm().item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(opt.ClipGradNorm(10.0), 1.0, 1e-6);  // below the limit: unchanged
}

TEST(AdamW, StateDictRoundTripContinuesIdentically) {
  auto make = [] { return torch::tensor({0.3, 0.7}, torch::kFloat).requires_grad_(true); };
  auto w1 = make(), w2 = make();
  AdamW o1({{"w", w1, true}}, {}), o2({{"w", w2, true}}, {});
  auto step = [](AdamW& o, torch::Tensor& w) {
    o.ZeroGrad();
    (w * w).sum().backward();
    o.Step(0.1);
  };
  step(o1, w1);
  step(o2, w2);
  // Restore o1's state into a fresh optimizer over a copy of w1, then continue both.
  auto w3 = w1.detach().clone().requires_grad_(true);
  AdamW o3({{"w", w3, true}}, {});
  ASSERT_TRUE(o3.LoadStateDict(o1.StateDict()).ok());
  for (int i = 0; i < 3; ++i) {
    step(o1, w1);
    step(o3, w3);
  }
  EXPECT_TRUE(torch::equal(w1, w3));
  auto bad = o1.StateDict();
  bad.erase("w.exp_avg");
  EXPECT_NE(o3.LoadStateDict(bad).message().find("w.exp_avg"), std::string::npos);
}

}  // namespace
}  // namespace peftd::train
