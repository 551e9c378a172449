// AttentionCore (one autograd node per attention) against the ATen composition it replaces, in
// double precision: outputs and the gradients of q, k and v, with GQA, causal and padding masks
// (including left-padded rows that see no key), and gradients only for the inputs that need one.
#include "worker/model/attention_core.h"

#include <gtest/gtest.h>

#include <limits>

namespace peftd::model {
namespace {

// Additive causal mask (B, T, T) with the given real-token mask (B, T).
torch::Tensor Mask(const torch::Tensor& real, torch::Dtype dtype) {
  const int64_t b = real.size(0), t = real.size(1);
  torch::Tensor causal = torch::ones({t, t}, torch::kBool).tril();
  torch::Tensor allowed = causal.view({1, t, t}).logical_and(real.to(torch::kBool).view({b, 1, t}));
  const double lowest = dtype == torch::kDouble ? std::numeric_limits<double>::lowest()
                                                : std::numeric_limits<float>::lowest();
  return torch::zeros({b, t, t}, dtype).masked_fill_(allowed.logical_not(), lowest);
}

struct Case {
  int64_t b, h, kv, t, d;
};

void ExpectMatchesReference(const Case& c, const torch::Tensor& real, bool k_needs_grad,
                            bool causal = false) {
  torch::manual_seed(7);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor q = torch::randn({c.b, c.h, c.t, c.d}, opts).requires_grad_(true);
  torch::Tensor k = torch::randn({c.b, c.kv, c.t, c.d}, opts).requires_grad_(k_needs_grad);
  torch::Tensor v = torch::randn({c.b, c.kv, c.t, c.d}, opts).requires_grad_(true);
  torch::Tensor mask = Mask(real, torch::kDouble);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  torch::Tensor weights = torch::randn({c.b, c.t, c.h * c.d}, opts);

  torch::Tensor ours = AttentionCore(q, k, v, mask, scale, causal);
  (ours * weights).sum().backward();
  const torch::Tensor dq = q.grad().clone(), dv = v.grad().clone();
  const torch::Tensor dk = k_needs_grad ? k.grad().clone() : torch::Tensor();
  q.mutable_grad().reset();
  v.mutable_grad().reset();
  if (k_needs_grad) k.mutable_grad().reset();

  torch::Tensor ref = AttentionCoreReference(q, k, v, mask, scale);
  (ref * weights).sum().backward();
  EXPECT_TRUE(torch::allclose(ours, ref, 1e-12, 1e-12)) << (ours - ref).abs().max();
  EXPECT_TRUE(torch::allclose(dq, q.grad(), 1e-12, 1e-12)) << (dq - q.grad()).abs().max();
  EXPECT_TRUE(torch::allclose(dv, v.grad(), 1e-12, 1e-12)) << (dv - v.grad()).abs().max();
  if (k_needs_grad) {
    EXPECT_TRUE(torch::allclose(dk, k.grad(), 1e-12, 1e-12)) << (dk - k.grad()).abs().max();
  }
}

TEST(AttentionCore, EqualsTheAtenCompositionWithGqa) {
  ExpectMatchesReference({2, 4, 2, 5, 3}, torch::ones({2, 5}), true);
}

TEST(AttentionCore, EqualsTheAtenCompositionWithMultiHeadAndOneKvHead) {
  ExpectMatchesReference({1, 3, 3, 4, 2}, torch::ones({1, 4}), true);
  ExpectMatchesReference({2, 6, 1, 4, 4}, torch::ones({2, 4}), true);
}

TEST(AttentionCore, PaddingOnEitherSideIncludingRowsThatSeeNoKey) {
  torch::Tensor real = torch::tensor({{0, 0, 1, 1, 1}, {1, 1, 1, 0, 0}}, torch::kLong);
  ExpectMatchesReference({2, 4, 2, 5, 3}, real, true);
}

// The causal schedule skips blocks of 32 query rows × later keys: sequences of several blocks
// (and a partial last one), right padding (every row still sees a key), GQA.
TEST(AttentionCore, CausalBlocksEqualTheFullComputation) {
  ExpectMatchesReference({2, 4, 2, 70, 4}, torch::ones({2, 70}), true, /*causal=*/true);
  torch::Tensor real = torch::ones({2, 70}, torch::kLong);
  real.index_put_({0, torch::indexing::Slice(50, 70)}, 0);
  real.index_put_({1, torch::indexing::Slice(33, 70)}, 0);
  ExpectMatchesReference({2, 4, 2, 70, 4}, real, true, /*causal=*/true);
  ExpectMatchesReference({1, 3, 1, 64, 2}, torch::ones({1, 64}), false, /*causal=*/true);
}

// Packed rows: block-diagonal causal masks with the records' first keys; the GEMMs also skip the
// keys before each block's record. Records of 5, 40, 1 and 20 tokens and 4 of padding (blocks of 32
// rows straddle records), and a row of one 70-token record; right padding joins its row's last
// record.
TEST(AttentionCore, PackedRecordsSkipEarlierRecordsAndEqualTheFullComputation) {
  const int64_t b = 2, t = 70;
  torch::Tensor record = torch::zeros({b, t}, torch::kLong);
  torch::Tensor first_key = torch::zeros({b, t}, torch::kLong);
  torch::Tensor real = torch::ones({b, t});
  int64_t start = 0, id = 0;
  for (int64_t len : {5, 40, 1, 20}) {
    record[0].slice(0, start, start + len).fill_(id++);
    first_key[0].slice(0, start, start + len).fill_(start);
    start += len;
  }
  record[0].slice(0, start).fill_(id - 1);  // padding: the last record's
  first_key[0].slice(0, start).fill_(start - 20);
  real[0].slice(0, start).zero_();
  torch::Tensor allowed = torch::ones({t, t}, torch::kBool).tril().view({1, t, t});
  allowed = allowed.logical_and(real.to(torch::kBool).view({b, 1, t}))
                .logical_and(record.view({b, t, 1}).eq(record.view({b, 1, t})));
  torch::Tensor mask =
      torch::zeros({b, t, t}, torch::kDouble)
          .masked_fill_(allowed.logical_not(), std::numeric_limits<double>::lowest());

  torch::manual_seed(9);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor q = torch::randn({b, 4, t, 8}, opts).requires_grad_(true);
  torch::Tensor k = torch::randn({b, 2, t, 8}, opts).requires_grad_(true);
  torch::Tensor v = torch::randn({b, 2, t, 8}, opts).requires_grad_(true);
  torch::Tensor weights = torch::randn({b, t, 32}, opts) * real.view({b, t, 1}).to(torch::kDouble);
  auto run = [&](bool fast) {
    torch::Tensor out = fast ? AttentionCore(q, k, v, mask, 0.35, /*causal=*/true, first_key)
                             : AttentionCoreReference(q, k, v, mask, 0.35);
    (out * weights).sum().backward();
    std::vector<torch::Tensor> r = {out.detach() * real.view({b, t, 1}).to(torch::kDouble),
                                    q.grad().clone(), k.grad().clone(), v.grad().clone()};
    q.mutable_grad().reset();
    k.mutable_grad().reset();
    v.mutable_grad().reset();
    return r;
  };
  const auto ours = run(true), ref = run(false);
  const char* names[] = {"output", "dq", "dk", "dv"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::allclose(ours[i], ref[i], 1e-12, 1e-12))
        << names[i] << " " << (ours[i] - ref[i]).abs().max();
  }
}

TEST(AttentionCore, KeysWithoutGradientGetNone) {
  ExpectMatchesReference({2, 4, 2, 5, 3}, torch::ones({2, 5}), false);
}

TEST(AttentionCore, Float32CpuRecordsOneNode) {
  torch::Tensor q = torch::randn({1, 2, 3, 4}).requires_grad_(true);
  torch::Tensor kv = torch::randn({1, 1, 3, 4});
  torch::Tensor out = AttentionCore(q, kv, kv, Mask(torch::ones({1, 3}), torch::kFloat), 0.5);
  EXPECT_NE(out.grad_fn()->name().find("AttentionFunction"), std::string::npos)
      << out.grad_fn()->name();
}

TEST(AttentionCore, FloatAndNoGradMatchTheReference) {
  torch::manual_seed(3);
  torch::Tensor q = torch::randn({2, 4, 6, 8}), k = torch::randn({2, 2, 6, 8}),
                v = torch::randn({2, 2, 6, 8});
  torch::Tensor mask = Mask(torch::ones({2, 6}), torch::kFloat);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(AttentionCore(q, k, v, mask, 0.3),
                              AttentionCoreReference(q, k, v, mask, 0.3), 1e-5, 1e-6));
}

}  // namespace
}  // namespace peftd::model
