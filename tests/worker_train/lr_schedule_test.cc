#include "worker/train/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace peftd::train {
namespace {

TEST(LrSchedule, LinearWarmupThenLinearDecay) {
  LrScheduleOptions o{
      .peak_lr = 1.0, .warmup_steps = 4, .total_steps = 14, .decay = LrDecay::kLinear};
  EXPECT_DOUBLE_EQ(LearningRate(o, 0), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(o, 2), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(o, 4), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(o, 9), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(o, 14), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(o, 20), 0.0);
}

TEST(LrSchedule, Cosine) {
  LrScheduleOptions o{
      .peak_lr = 2.0, .warmup_steps = 0, .total_steps = 10, .decay = LrDecay::kCosine};
  EXPECT_DOUBLE_EQ(LearningRate(o, 0), 2.0);
  EXPECT_NEAR(LearningRate(o, 5), 1.0, 1e-12);
  EXPECT_NEAR(LearningRate(o, 10), 0.0, 1e-12);
  EXPECT_NEAR(LearningRate(o, 2), 1.0 + std::cos(M_PI * 0.2), 1e-12);
}

TEST(LrSchedule, ConstantAfterWarmup) {
  LrScheduleOptions o{
      .peak_lr = 3.0, .warmup_steps = 3, .total_steps = 10, .decay = LrDecay::kConstant};
  EXPECT_DOUBLE_EQ(LearningRate(o, 1), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(o, 3), 3.0);
  EXPECT_DOUBLE_EQ(LearningRate(o, 9), 3.0);
}

}  // namespace
}  // namespace peftd::train
