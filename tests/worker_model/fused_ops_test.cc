// The fused RMSNorm, RoPE and SwiGLU nodes against the ATen compositions they replace, in double
// precision: values and the gradients of every input that needs one; and in float32.
#include "worker/model/fused_ops.h"

#include <gtest/gtest.h>

namespace peftd::model {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// Runs f and ref on fresh copies of `inputs` (those flagged trainable require a gradient), with
// the same random cotangent, and compares outputs and input gradients.
void ExpectSameValueAndGradients(
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& f,
    const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& ref,
    const std::vector<torch::Tensor>& inputs, const std::vector<bool>& trainable) {
  auto run = [&](const auto& fn, torch::Tensor* out, std::vector<torch::Tensor>* grads) {
    std::vector<torch::Tensor> in;
    for (size_t i = 0; i < inputs.size(); ++i)
      in.push_back(inputs[i].clone().requires_grad_(trainable[i]));
    *out = fn(in);
    torch::manual_seed(11);
    (*out * torch::randn_like(*out)).sum().backward();
    for (size_t i = 0; i < in.size(); ++i)
      grads->push_back(trainable[i] ? in[i].grad() : torch::Tensor());
  };
  torch::Tensor a, b;
  std::vector<torch::Tensor> ga, gb;
  run(f, &a, &ga);
  run(ref, &b, &gb);
  ASSERT_TRUE(a.sizes().equals(b.sizes()));
  EXPECT_TRUE(torch::allclose(a, b, 1e-12, 1e-12)) << (a - b).abs().max();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!trainable[i]) continue;
    ASSERT_TRUE(ga[i].defined()) << "input " << i;
    EXPECT_TRUE(torch::allclose(ga[i], gb[i], 1e-12, 1e-12))
        << "input " << i << ": " << (ga[i] - gb[i]).abs().max();
  }
}

TEST(FusedOps, RmsNormEqualsTheReferenceWithAndWithoutAWeightGradient) {
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({2, 3, 8}, kDouble), w = torch::randn({8}, kDouble);
  auto fused = [](const std::vector<torch::Tensor>& in) {
    return RmsNormForward(in[0], in[1], 1e-5);
  };
  auto ref = [](const std::vector<torch::Tensor>& in) {
    return RmsNormReference(in[0], in[1], 1e-5);
  };
  ExpectSameValueAndGradients(fused, ref, {x, w}, {true, false});
  ExpectSameValueAndGradients(fused, ref, {x, w}, {true, true});
}

TEST(FusedOps, RopeEqualsTheReferenceAndLaysOutHeadsFirst) {
  torch::manual_seed(2);
  const int64_t b = 2, t = 5, heads = 3, d = 6;
  torch::Tensor x = torch::randn({b, t, heads * d}, kDouble);
  torch::Tensor angles = torch::randn({b, t, d / 2}, kDouble);
  torch::Tensor emb = torch::cat({angles, angles}, -1);
  torch::Tensor cos = emb.cos(), sin = emb.sin();
  auto fused = [&](const std::vector<torch::Tensor>& in) {
    return RopeForward(in[0], cos, sin, heads);
  };
  auto ref = [&](const std::vector<torch::Tensor>& in) {
    return RopeReference(in[0], cos, sin, heads);
  };
  ExpectSameValueAndGradients(fused, ref, {x}, {true});
  torch::Tensor out = RopeForward(x, cos, sin, heads);
  EXPECT_TRUE(out.is_contiguous());
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{b, heads, t, d}));
  // Position 0 of a zero angle is the identity.
  torch::Tensor ones = torch::ones({b, t, d}, kDouble), zeros = torch::zeros({b, t, d}, kDouble);
  EXPECT_TRUE(torch::equal(RopeForward(x, ones, zeros, heads),
                           x.view({b, t, heads, d}).transpose(1, 2).contiguous()));
}

TEST(FusedOps, SwiGluEqualsTheReference) {
  torch::manual_seed(3);
  torch::Tensor g = torch::randn({4, 7}, kDouble) * 3, u = torch::randn({4, 7}, kDouble);
  auto fused = [](const std::vector<torch::Tensor>& in) { return SwiGluForward(in[0], in[1]); };
  auto ref = [](const std::vector<torch::Tensor>& in) { return SwiGluReference(in[0], in[1]); };
  ExpectSameValueAndGradients(fused, ref, {g, u}, {true, true});
  ExpectSameValueAndGradients(fused, ref, {g, u}, {true, false});
}

TEST(FusedOps, Float32MatchesTheReference) {
  torch::manual_seed(4);
  torch::Tensor x = torch::randn({3, 64}), w = torch::randn({64});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(
      torch::allclose(RmsNormForward(x, w, 1e-6), RmsNormReference(x, w, 1e-6), 1e-5, 1e-6));
  torch::Tensor g = torch::randn({3, 64}), u = torch::randn({3, 64});
  EXPECT_TRUE(torch::allclose(SwiGluForward(g, u), SwiGluReference(g, u), 1e-5, 1e-6));
}

}  // namespace
}  // namespace peftd::model
