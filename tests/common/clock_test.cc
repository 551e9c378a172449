#include "common/clock.h"

#include <gtest/gtest.h>

namespace peftd {
namespace {

TEST(FakeClock, MovesOnlyWhenTold) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(6));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(106));
  clock.Set(absl::FromUnixSeconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(5));
}

TEST(RealClock, IsMonotonicEnough) {
  absl::Time a = Clock::Real()->Now();
  absl::Time b = Clock::Real()->Now();
  EXPECT_LE(a, b);
  EXPECT_GT(a, absl::FromUnixSeconds(1600000000));
}

}  // namespace
}  // namespace peftd
