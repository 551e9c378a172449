// The fused lm-head cross-entropy against F::linear + F::cross_entropy in double precision: the
// summed loss and the hidden-state gradient, over several chunks, with ignored (−100) rows, and
// without a gradient (evaluation).
#include "worker/model/lm_head_loss.h"

#include <gtest/gtest.h>

namespace peftd::model {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

void ExpectMatches(int64_t n, int64_t h, int64_t v, const torch::Tensor& targets,
                   int64_t chunk_rows = 0) {
  torch::manual_seed(5);
  torch::Tensor hidden = torch::randn({n, h}, kDouble);
  torch::Tensor weight = torch::randn({v, h}, kDouble);
  torch::Tensor a = hidden.clone().requires_grad_(true), b = hidden.clone().requires_grad_(true);
  torch::Tensor ours = LmHeadCrossEntropySum(a, weight, targets, chunk_rows);
  torch::Tensor ref = LmHeadCrossEntropySumReference(b, weight, targets);
  (ours * 0.37).backward();
  (ref * 0.37).backward();
  EXPECT_NEAR(ours.item<double>(), ref.item<double>(), 1e-9 * std::abs(ref.item<double>()));
  EXPECT_TRUE(torch::allclose(a.grad(), b.grad(), 1e-12, 1e-12))
      << (a.grad() - b.grad()).abs().max();
}

TEST(LmHeadLoss, EqualsTheReferenceOnOneChunk) {
  ExpectMatches(6, 5, 11, torch::tensor({0, 3, 10, 7, 7, 1}, torch::kLong));
}

TEST(LmHeadLoss, EqualsTheReferenceAcrossChunksWithIgnoredRows) {
  // Chunks of 20 rows: 50 rows take three, the last one partial.
  torch::manual_seed(6);
  torch::Tensor targets = torch::randint(0, 500, {50}, torch::kLong);
  targets[3] = -100;
  targets[21] = -100;
  targets[49] = -100;
  ExpectMatches(50, 3, 500, targets, /*chunk_rows=*/20);
}

TEST(LmHeadLoss, WithoutGradientOnlyTheLoss) {
  torch::manual_seed(7);
  torch::Tensor hidden = torch::randn({4, 3}, kDouble), weight = torch::randn({9, 3}, kDouble);
  torch::Tensor targets = torch::tensor({1, -100, 8, 0}, torch::kLong);
  torch::NoGradGuard no_grad;
  EXPECT_NEAR(LmHeadCrossEntropySum(hidden, weight, targets).item<double>(),
              LmHeadCrossEntropySumReference(hidden, weight, targets).item<double>(), 1e-12);
}

}  // namespace
}  // namespace peftd::model
