// The data-parallel gradient buckets: two ranks in one process (one thread each, meeting over a
// TCPStore on 127.0.0.1) train a chain of layers. Buckets start during the backward pass, from
// the last layer down, and after Finish every gradient is the sum of both ranks' gradients.
#include "worker/train/gradient_buckets.h"

#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <thread>

namespace peftd::train {
namespace {

constexpr int kLayers = 6;
constexpr int64_t kWidth = 8;
// One layer's weight: a bucket closes at the first tensor that reaches it, so each bucket is one
// layer (its bias, then its weight, in the reverse order).
constexpr int64_t kWeightBytes = kWidth * kWidth * 4;

// h_{l+1} = tanh(h_l W_lᵀ + b_l); the weights decay, the biases do not (AdamW keeps the two in
// separate regions of its flat buffer, so a bucket is two slices).
struct Chain {
  std::vector<torch::Tensor> weights, biases;
  std::unique_ptr<AdamW> optimizer;
};

Chain MakeChain() {
  Chain c;
  std::vector<TrainableTensor> params;
  for (int l = 0; l < kLayers; ++l) {
    const double phase = l + 1;
    c.weights.push_back(
        (torch::arange(kWidth * kWidth, torch::kFloat).reshape({kWidth, kWidth}) * 0.37 + phase)
            .sin()
            .mul(0.5)
            .requires_grad_());
    c.biases.push_back(
        (torch::arange(kWidth, torch::kFloat) * 0.11 - phase).cos().mul(0.1).requires_grad_());
    params.push_back({"w" + std::to_string(l), c.weights.back(), true});
    params.push_back({"b" + std::to_string(l), c.biases.back(), false});
  }
  c.optimizer = std::make_unique<AdamW>(params, AdamWOptions{});
  return c;
}

torch::Tensor Input(int rank, int micro) {
  return (torch::arange(16 * kWidth, torch::kFloat).reshape({16, kWidth}) * (0.013 * (rank + 1)) +
          micro)
      .sin();
}

// The loss of one micro-batch; `first_layer_grad` runs when the backward pass reaches the
// output of layer 0 (layer 0's own gradients are not final yet).
torch::Tensor Loss(const Chain& c, const torch::Tensor& x, int skip_bias_of_layer = -1,
                   std::function<void()> first_layer_grad = nullptr) {
  torch::Tensor h = x;
  for (int l = 0; l < kLayers; ++l) {
    h = l == skip_bias_of_layer ? torch::tanh(torch::matmul(h, c.weights[l].t()))
                                : torch::tanh(torch::addmm(c.biases[l], h, c.weights[l].t()));
    if (l == 0 && first_layer_grad) {
      h.register_hook([first_layer_grad](const torch::Tensor& g) {
        first_layer_grad();
        return g;
      });
    }
  }
  return h.pow(2).sum();
}

std::pair<std::unique_ptr<DataParallel>, std::unique_ptr<DataParallel>> ConnectTwoRanks() {
  std::promise<uint16_t> port;
  absl::StatusOr<std::unique_ptr<DataParallel>> rank0;
  std::thread rank0_thread([&] {
    DataParallelOptions o;
    o.rank = 0;
    o.world_size = 2;
    o.rendezvous = "127.0.0.1:0";
    o.key = "buckets";
    o.timeout = std::chrono::seconds(60);
    o.listening = [&](uint16_t p) { port.set_value(p); };
    rank0 = DataParallel::Connect(o);
  });
  DataParallelOptions o;
  o.rank = 1;
  o.world_size = 2;
  o.rendezvous = "127.0.0.1:" + std::to_string(port.get_future().get());
  o.key = "buckets";
  o.timeout = std::chrono::seconds(60);
  auto rank1 = DataParallel::Connect(o);
  rank0_thread.join();
  EXPECT_TRUE(rank0.ok()) << rank0.status();
  EXPECT_TRUE(rank1.ok()) << rank1.status();
  if (!rank0.ok() || !rank1.ok()) return {};
  return {std::move(*rank0), std::move(*rank1)};
}

struct RankOutcome {
  int buckets = 0;
  int started_at_first_layer = -1;  // buckets started when the backward pass reached layer 0
  int started_in_backward = -1;     // when backward() returned
  absl::Status status;
};

// One rank's step: `micro` backward passes, the last one armed, then Finish.
RankOutcome RunRank(DataParallel* dp, Chain* chain, int micro, int skip_bias_of_layer = -1) {
  RankOutcome out;
  GradientBuckets buckets(dp, chain->optimizer.get(), kWeightBytes);
  out.buckets = buckets.num_buckets();
  for (int m = 0; m < micro; ++m) {
    const bool last = m + 1 == micro;
    if (last) buckets.Arm();
    std::function<void()> at_layer0;
    if (last) at_layer0 = [&] { out.started_at_first_layer = buckets.started_in_backward(); };
    Loss(*chain, Input(dp->rank(), m), skip_bias_of_layer, at_layer0).backward();
  }
  out.started_in_backward = buckets.started_in_backward();
  out.status = buckets.Finish();
  return out;
}

// What the sum over both ranks must be: both ranks' micro-batches on one chain.
Chain Reference(int micro, int skip_bias_of_layer = -1) {
  Chain c = MakeChain();
  for (int rank = 0; rank < 2; ++rank) {
    for (int m = 0; m < micro; ++m) Loss(c, Input(rank, m), skip_bias_of_layer).backward();
  }
  return c;
}

void ExpectSameGradients(const Chain& got, const Chain& expected) {
  for (int l = 0; l < kLayers; ++l) {
    for (auto [a, b, name] : {std::tuple{got.weights[l], expected.weights[l], "weight"},
                              std::tuple{got.biases[l], expected.biases[l], "bias"}}) {
      ASSERT_TRUE(a.grad().defined()) << name << " " << l;
      // fp32 sums in another order (rank by rank, then over ranks): rounding only.
      EXPECT_TRUE(torch::allclose(a.grad(), b.grad(), 1e-5, 1e-7))
          << name << " of layer " << l << ": " << (a.grad() - b.grad()).abs().max().item<float>();
    }
  }
}

class GradientBucketsTest : public ::testing::TestWithParam<int> {};

TEST_P(GradientBucketsTest, BucketsStartDuringBackwardAndSumEveryGradient) {
  const int micro = GetParam();
  auto [dp0, dp1] = ConnectTwoRanks();
  ASSERT_TRUE(dp0 && dp1);
  Chain c0 = MakeChain(), c1 = MakeChain();
  RankOutcome out1;
  std::thread rank1([&] { out1 = RunRank(dp1.get(), &c1, micro); });
  RankOutcome out0 = RunRank(dp0.get(), &c0, micro);
  rank1.join();
  for (const RankOutcome& out : {out0, out1}) {
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.buckets, kLayers);
    // Layers 5..1 were summing while the backward pass was still in layer 0...
    EXPECT_GE(out.started_at_first_layer, 2);
    EXPECT_LT(out.started_at_first_layer, kLayers);
    // ...and layer 0 started as soon as its gradients were final, before backward() returned.
    EXPECT_EQ(out.started_in_backward, kLayers);
  }
  const Chain expected = Reference(micro);
  ExpectSameGradients(c0, expected);
  ExpectSameGradients(c1, expected);
  EXPECT_GT(dp0->allreduce_busy_seconds(), 0);
}

// With gradient accumulation only the last backward pass overlaps; the earlier micro-batches'
// gradients are in the buffer it sums.
INSTANTIATE_TEST_SUITE_P(MicroBatches, GradientBucketsTest, ::testing::Values(1, 3));

// A tensor that gets no gradient in the backward pass (here the bias of the last layer, in the
// first bucket) holds back every bucket: they start in Finish, still in order on both ranks, and
// the sums are right.
TEST(GradientBuckets, ABucketWithoutItsGradientsStartsInFinishAndHoldsBackTheRest) {
  auto [dp0, dp1] = ConnectTwoRanks();
  ASSERT_TRUE(dp0 && dp1);
  Chain c0 = MakeChain(), c1 = MakeChain();
  RankOutcome out1;
  std::thread rank1([&] { out1 = RunRank(dp1.get(), &c1, 1, kLayers - 1); });
  RankOutcome out0 = RunRank(dp0.get(), &c0, 1, kLayers - 1);
  rank1.join();
  for (const RankOutcome& out : {out0, out1}) {
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.started_in_backward, 0);
  }
  const Chain expected = Reference(1, kLayers - 1);
  ExpectSameGradients(c0, expected);
  ExpectSameGradients(c1, expected);
}

// A tensor that stopped requiring a gradient (AdaDHP prunes a module: no gradient at all) does
// not hold back its bucket; its slice of the flat buffer stays zero.
TEST(GradientBuckets, APrunedTensorDoesNotHoldBackItsBucket) {
  auto [dp0, dp1] = ConnectTwoRanks();
  ASSERT_TRUE(dp0 && dp1);
  Chain c0 = MakeChain(), c1 = MakeChain();
  for (Chain* c : {&c0, &c1}) {
    c->biases[kLayers - 1].requires_grad_(false);
    c->biases[kLayers - 1].mutable_grad() = torch::Tensor();
    c->optimizer->ZeroGrad();
  }
  RankOutcome out1;
  std::thread rank1([&] { out1 = RunRank(dp1.get(), &c1, 1); });
  RankOutcome out0 = RunRank(dp0.get(), &c0, 1);
  rank1.join();
  for (const RankOutcome& out : {out0, out1}) {
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.started_in_backward, kLayers);
  }
  Chain expected = MakeChain();
  expected.biases[kLayers - 1].requires_grad_(false);
  for (int rank = 0; rank < 2; ++rank) Loss(expected, Input(rank, 0)).backward();
  for (int l = 0; l < kLayers; ++l) {
    EXPECT_TRUE(torch::allclose(c0.weights[l].grad(), expected.weights[l].grad(), 1e-5, 1e-7));
  }
  const int64_t pruned = c0.optimizer->flat_offset(2 * (kLayers - 1) + 1);
  EXPECT_EQ(c0.optimizer->flat_grad().narrow(0, pruned, kWidth).abs().sum().item<float>(), 0);
}

TEST(GradientBuckets, AutoBucketBytesIsAnEighthWithinDdpLikeBounds) {
  EXPECT_EQ(AutoBucketBytes(1'200'000), 256 << 10);        // LoRA q,v r=8, ~100M: 5 buckets
  EXPECT_EQ(AutoBucketBytes(16'777'216), 2'097'152);       // LoRA q,v r=8, 7B: 8 buckets
  EXPECT_EQ(AutoBucketBytes(int64_t{4} << 30), 25 << 20);  // a large adapter: DDP's 25 MiB
}

// A world of one: no collectives, Finish is a no-op and the gradients stay this rank's.
TEST(GradientBuckets, AWorldOfOneLeavesTheGradients) {
  DataParallelOptions o;
  auto dp = DataParallel::Connect(o);
  ASSERT_TRUE(dp.ok()) << dp.status();
  Chain c = MakeChain();
  RankOutcome out = RunRank(dp->get(), &c, 1);
  ASSERT_TRUE(out.status.ok()) << out.status;
  Chain expected = MakeChain();
  Loss(expected, Input(0, 0)).backward();
  for (int l = 0; l < kLayers; ++l) {
    EXPECT_TRUE(c.weights[l].grad().equal(expected.weights[l].grad())) << l;
  }
}

}  // namespace
}  // namespace peftd::train
