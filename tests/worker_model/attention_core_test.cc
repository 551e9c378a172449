// AttentionCore (one autograd node per attention) against the ATen composition it replaces, in
// double precision: outputs and the gradients of q, k and v, with GQA, causal and padding masks
// (including left-padded rows that see no key), the encoder's forms (a row of keys per sequence,
// marked right padding, fewer queries than keys), and gradients only for the inputs that need
// one.
#include "worker/model/attention_core.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <utility>
#include <vector>

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

// Random double inputs of an attention node, requiring gradients, and the weights of a loss that
// reads only the real positions (`real`: (B, T), 1 on real tokens).
struct AttentionInputs {
  torch::Tensor q, k, v, keep, weights;

  // The output of `attention` and dq, dk, dv of the loss; the gradients are reset afterwards.
  std::vector<torch::Tensor> Run(const std::function<torch::Tensor()>& attention) {
    torch::Tensor out = attention();
    (out * weights).sum().backward();
    std::vector<torch::Tensor> r = {out.detach(), q.grad().clone(), k.grad().clone(),
                                    v.grad().clone()};
    q.mutable_grad().reset();
    k.mutable_grad().reset();
    v.mutable_grad().reset();
    return r;
  }
};

AttentionInputs RandomAttentionInputs(int64_t b, int64_t h, int64_t kv, int64_t t, int64_t d,
                                      const torch::Tensor& real, uint64_t seed) {
  torch::manual_seed(seed);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  AttentionInputs in;
  in.q = torch::randn({b, h, t, d}, opts).requires_grad_(true);
  in.k = torch::randn({b, kv, t, d}, opts).requires_grad_(true);
  in.v = torch::randn({b, kv, t, d}, opts).requires_grad_(true);
  in.keep = real.view({b, t, 1}).to(torch::kDouble);
  in.weights = torch::randn({b, t, h * d}, opts) * in.keep;
  return in;
}

// Packed rows given by their record lengths (padding after the last record joins it), against
// the reference in double: output at real positions and the gradients of q, k and v.
// With `mark_padding`, the padding's first keys are position + 1 (AttentionCore's mark of right
// padding): its outputs must be exactly 0 and the rest unchanged.
void ExpectPackedRowsMatch(const std::vector<std::vector<int64_t>>& rows, int64_t t, int64_t h,
                           int64_t kv, int64_t d, bool mark_padding = false) {
  const int64_t b = static_cast<int64_t>(rows.size());
  torch::Tensor record = torch::zeros({b, t}, torch::kLong);
  torch::Tensor first_key = torch::zeros({b, t}, torch::kLong);
  torch::Tensor real = torch::zeros({b, t});
  for (int64_t i = 0; i < b; ++i) {
    int64_t start = 0, id = 0;
    for (int64_t len : rows[i]) {
      record[i].slice(0, start, start + len).fill_(id++);
      first_key[i].slice(0, start, start + len).fill_(start);
      real[i].slice(0, start, start + len).fill_(1);
      start += len;
    }
    record[i].slice(0, start).fill_(id - 1);
    first_key[i].slice(0, start).fill_(start - rows[i].back());
    if (mark_padding) first_key[i].slice(0, start).copy_(torch::arange(start, t) + 1);
  }
  torch::Tensor allowed = torch::ones({t, t}, torch::kBool).tril().view({1, t, t});
  allowed = allowed.logical_and(real.to(torch::kBool).view({b, 1, t}))
                .logical_and(record.view({b, t, 1}).eq(record.view({b, 1, t})));
  torch::Tensor mask =
      torch::zeros({b, t, t}, torch::kDouble)
          .masked_fill_(allowed.logical_not(), std::numeric_limits<double>::lowest());
  AttentionInputs in = RandomAttentionInputs(b, h, kv, t, d, real, 11);
  const torch::Tensor &q = in.q, &k = in.k, &v = in.v, &keep = in.keep;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto ours =
      in.Run([&] { return AttentionCore(q, k, v, mask, scale, /*causal=*/true, first_key); });
  auto ref = in.Run([&] { return AttentionCoreReference(q, k, v, mask, scale); });
  ours[0] = ours[0] * keep;
  ref[0] = ref[0] * keep;
  const char* names[] = {"output", "dq", "dk", "dv"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::allclose(ours[i], ref[i], 1e-12, 1e-12))
        << names[i] << " " << (ours[i] - ref[i]).abs().max();
  }
  if (mark_padding) {
    torch::NoGradGuard no_grad;
    torch::Tensor out = AttentionCore(q, k, v, mask, scale, /*causal=*/true, first_key);
    EXPECT_TRUE(torch::equal(out * (1 - keep), torch::zeros_like(out)));
    EXPECT_FALSE(torch::equal(out * keep, torch::zeros_like(out)));
  }
}

// Blocks of 32 query rows against records that start mid-block (13, 63, 93), a one-token record,
// a row of one record without padding, T = 100 (a partial last block), G = 3 and head dims 16 and
// 64 (the vector loops' full lanes and their tails both run: visible keys per block are rarely a
// multiple of 8).
TEST(AttentionCore, PackedRowsWithRecordsStartingMidBlock) {
  const std::vector<std::vector<int64_t>> rows = {{13, 50, 30, 1}, {100}, {7, 25, 40}};
  ExpectPackedRowsMatch(rows, 100, 6, 2, 16);
  ExpectPackedRowsMatch(rows, 100, 4, 1, 64);
  ExpectPackedRowsMatch({{33, 32}, {1, 1, 1, 62}}, 65, 2, 2, 3);
}

// Right padding marked in first_key (position + 1): the padding's queries are skipped (output 0,
// no gradient), the real positions and every gradient equal the reference's. Padding from mid-
// block (row 0: 61 real of 90), from a block boundary (row 1: 64), none (row 2), and after packed
// records (row 3).
TEST(AttentionCore, MarkedRightPaddingIsSkippedAndChangesNothingElse) {
  ExpectPackedRowsMatch({{61}, {64}, {90}, {20, 9, 30}}, 90, 4, 2, 16, /*mark_padding=*/true);
  ExpectPackedRowsMatch({{1}, {33, 1}}, 40, 2, 1, 8, /*mark_padding=*/true);
}

// The general (non-causal) path over several blocks of query rows: left padding (rows that see
// no key attend uniformly to every key, as in the reference) and right padding at T = 70.
TEST(AttentionCore, GeneralMaskOverSeveralBlocks) {
  torch::Tensor real = torch::ones({2, 70}, torch::kLong);
  real.index_put_({0, torch::indexing::Slice(0, 40)}, 0);
  real.index_put_({1, torch::indexing::Slice(61, 70)}, 0);
  ExpectMatchesReference({2, 6, 2, 70, 16}, real, true);
}

// The float path (8-lane exp with its own polynomial, row tails) against the double reference:
// causal and packed rows at T = 77, head dim 16; outputs and gradients to float accuracy.
TEST(AttentionCore, Float32MatchesTheDoubleReference) {
  const int64_t b = 2, h = 4, kv = 2, t = 77, d = 16;
  torch::Tensor first_key = torch::zeros({b, t}, torch::kLong);
  first_key[1].slice(0, 30).fill_(30);
  torch::Tensor record = torch::zeros({b, t}, torch::kLong);
  record[1].slice(0, 30).fill_(1);
  torch::Tensor allowed = torch::ones({t, t}, torch::kBool).tril().view({1, t, t});
  allowed = allowed.logical_and(record.view({b, t, 1}).eq(record.view({b, 1, t})));
  torch::manual_seed(5);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor q = torch::randn({b, h, t, d}, opts) * 2, k = torch::randn({b, kv, t, d}, opts),
                v = torch::randn({b, kv, t, d}, opts), weights = torch::randn({b, t, h * d}, opts);
  auto run = [&](torch::Dtype dtype, bool fast) {
    torch::Tensor qi = q.to(dtype).requires_grad_(true), ki = k.to(dtype).requires_grad_(true),
                  vi = v.to(dtype).requires_grad_(true);
    const double lowest = dtype == torch::kDouble ? std::numeric_limits<double>::lowest()
                                                  : std::numeric_limits<float>::lowest();
    torch::Tensor mask = torch::zeros({b, t, t}, dtype).masked_fill_(allowed.logical_not(), lowest);
    torch::Tensor out = fast ? AttentionCore(qi, ki, vi, mask, 0.25, true, first_key)
                             : AttentionCoreReference(qi, ki, vi, mask, 0.25);
    (out * weights.to(dtype)).sum().backward();
    return std::vector<torch::Tensor>{out.detach().to(torch::kDouble), qi.grad().to(torch::kDouble),
                                      ki.grad().to(torch::kDouble), vi.grad().to(torch::kDouble)};
  };
  const auto ours = run(torch::kFloat, true), ref = run(torch::kDouble, false);
  const char* names[] = {"output", "dq", "dk", "dv"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::allclose(ours[i], ref[i], 1e-4, 1e-5))
        << names[i] << " " << (ours[i] - ref[i]).abs().max();
  }
}

// A first key past its own position before the row's padding (or decreasing) is refused with the
// position named, not read as a range of negative length.
TEST(AttentionCore, RefusesFirstKeysThatAreNotAPrefixOfRecordsAndPadding) {
  torch::Tensor q = torch::randn({1, 2, 6, 4}), kv = torch::randn({1, 1, 6, 4});
  torch::Tensor mask = Mask(torch::ones({1, 6}), torch::kFloat);
  torch::Tensor bad = torch::tensor({{0, 0, 3, 3, 3, 3}}, torch::kLong);  // row 2 starts at 3
  EXPECT_THROW(AttentionCore(q, kv, kv, mask, 0.5, true, bad), c10::Error);
  torch::Tensor ok = torch::tensor({{0, 0, 2, 2, 5, 6}}, torch::kLong);  // padding from 4
  EXPECT_NO_THROW(AttentionCore(q, kv, kv, mask, 0.5, true, ok));
}

// The encoder's (non-causal) forms against the reference with the full (B, T, T) mask that hides
// padding keys, in double: a (B, Tk) row of keys per sequence, or no mask at all with the right
// padding marked in first_key (position + 1 after the last real token; the GEMMs skip the
// padding's keys and queries). Real positions' outputs and every gradient equal the reference's,
// the padding's outputs are exactly 0. Padding from mid-block (row 0: 45 real of 70), from a
// block boundary (row 1: 32), none (row 2), a single real token (row 3); GQA.
TEST(AttentionCore, EncoderKeyMaskAndMarkedPaddingEqualTheFullMask) {
  const int64_t b = 4, h = 4, kv = 2, t = 70, d = 16;
  const std::vector<int64_t> lengths = {45, 32, 70, 1};
  torch::Tensor real = torch::zeros({b, t}, torch::kLong);
  torch::Tensor first_key = torch::zeros({b, t}, torch::kLong);
  for (int64_t i = 0; i < b; ++i) {
    real[i].slice(0, 0, lengths[i]).fill_(1);
    first_key[i].slice(0, lengths[i]).copy_(torch::arange(lengths[i], t) + 1);
  }
  const double lowest = std::numeric_limits<double>::lowest();
  torch::Tensor key_mask = torch::zeros({b, t}, torch::kDouble).masked_fill_(real.eq(0), lowest);
  torch::Tensor full = key_mask.view({b, 1, t}).expand({b, t, t}).contiguous();
  AttentionInputs in = RandomAttentionInputs(b, h, kv, t, d, real, 13);
  const torch::Tensor &q = in.q, &k = in.k, &v = in.v, &keep = in.keep;
  const auto ref = in.Run([&] { return AttentionCoreReference(q, k, v, full, 0.3); });
  const std::vector<std::pair<const char*, std::function<torch::Tensor()>>> forms = {
      {"key mask", [&] { return AttentionCore(q, k, v, key_mask, 0.3); }},
      {"key mask, marked padding",
       [&] { return AttentionCore(q, k, v, key_mask, 0.3, false, first_key); }},
      {"no mask, marked padding",
       [&] { return AttentionCore(q, k, v, torch::Tensor(), 0.3, false, first_key); }}};
  const char* names[] = {"output", "dq", "dk", "dv"};
  for (const auto& [form, f] : forms) {
    auto ours = in.Run(f);
    if (form != forms[0].first) {
      EXPECT_TRUE(torch::equal(ours[0] * (1 - keep), torch::zeros_like(ours[0]))) << form;
    }
    ours[0] = ours[0] * keep;
    std::vector<torch::Tensor> expected = ref;
    expected[0] = ref[0] * keep;
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(torch::allclose(ours[i], expected[i], 1e-12, 1e-12))
          << form << ", " << names[i] << " " << (ours[i] - expected[i]).abs().max();
    }
  }
}

// Fewer queries than keys (an encoder's last layer read at its first tokens only): the output and
// every gradient equal those of the full computation whose later query rows carry no weight, with
// the key mask and with marked padding; 1 query and 33 (two blocks), in double. The causal
// schedule refuses it.
TEST(AttentionCore, FirstQueriesOnlyEqualTheFullComputationsRows) {
  const int64_t b = 2, h = 4, kv = 2, t = 50, d = 8;
  torch::Tensor real = torch::ones({b, t}, torch::kLong);
  real[1].slice(0, 40).zero_();
  torch::Tensor first_key = torch::zeros({b, t}, torch::kLong);
  first_key[1].slice(0, 40).copy_(torch::arange(40, t) + 1);
  torch::Tensor key_mask = torch::zeros({b, t}, torch::kDouble)
                               .masked_fill_(real.eq(0), std::numeric_limits<double>::lowest());
  torch::manual_seed(17);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor q_all = torch::randn({b, h, t, d}, opts);
  torch::Tensor k = torch::randn({b, kv, t, d}, opts).requires_grad_(true);
  torch::Tensor v = torch::randn({b, kv, t, d}, opts).requires_grad_(true);
  for (int64_t tq : {1, 33}) {
    torch::Tensor weights = torch::randn({b, tq, h * d}, opts);
    auto run = [&](bool fast, bool marked) {
      torch::Tensor q = q_all.narrow(2, 0, tq).clone().requires_grad_(true);
      torch::Tensor out;
      if (fast) {
        out = marked ? AttentionCore(q, k, v, torch::Tensor(), 0.4, false, first_key)
                     : AttentionCore(q, k, v, key_mask, 0.4);
      } else {
        // The reference over every query, read at the first tq.
        torch::Tensor full_q = torch::cat({q, q_all.narrow(2, tq, t - tq)}, 2);
        torch::Tensor mask = key_mask.view({b, 1, t}).expand({b, t, t}).contiguous();
        out = AttentionCoreReference(full_q, k, v, mask, 0.4).narrow(1, 0, tq);
      }
      (out * weights).sum().backward();
      std::vector<torch::Tensor> r = {out.detach(), q.grad().clone(), k.grad().clone(),
                                      v.grad().clone()};
      k.mutable_grad().reset();
      v.mutable_grad().reset();
      return r;
    };
    const auto ref = run(false, false);
    for (bool marked : {false, true}) {
      const auto ours = run(true, marked);
      const char* names[] = {"output", "dq", "dk", "dv"};
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(torch::allclose(ours[i], ref[i], 1e-12, 1e-12))
            << "tq " << tq << (marked ? ", marked" : ", key mask") << ", " << names[i] << " "
            << (ours[i] - ref[i]).abs().max();
      }
    }
  }
  torch::Tensor q = torch::randn({b, h, 1, d}, opts);
  EXPECT_THROW(AttentionCore(q, k, v, key_mask, 0.4, /*causal=*/true), c10::Error);
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
