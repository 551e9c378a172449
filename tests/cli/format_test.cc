// Human units and tables, as strings.
#include "clients/cli/format.h"

#include <gtest/gtest.h>

namespace peftd::cli {
namespace {

TEST(FormatDuration, TwoUnitsLargestFirst) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(-5), "0s");
  EXPECT_EQ(FormatDuration(0.4), "0s");
  EXPECT_EQ(FormatDuration(45), "45s");
  EXPECT_EQ(FormatDuration(192), "3m12s");
  EXPECT_EQ(FormatDuration(3600), "1h00m");
  EXPECT_EQ(FormatDuration(2 * 3600 + 5 * 60 + 59), "2h05m");
  EXPECT_EQ(FormatDuration(3 * 86400 + 4 * 3600), "3d04h");
}

TEST(FormatBytes, BinaryUnits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(static_cast<int64_t>(2.1 * (1 << 20))), "2.1 MiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.0 GiB");
}

TEST(FormatCount, ThreeSignificantDigits) {
  EXPECT_EQ(FormatCount(950), "950");
  EXPECT_EQ(FormatCount(4200), "4.20k");
  EXPECT_EQ(FormatCount(42000), "42.0k");
  EXPECT_EQ(FormatCount(135e6), "135M");
  EXPECT_EQ(FormatCount(1.1e9), "1.10B");
}

// One precision for every loss of a job, so that a column of them lines up (before: "%.4g" gave
// 1.235 next to 0.01235 and 12.5).
TEST(FormatLoss, FourDecimalsOrDash) {
  EXPECT_EQ(FormatLoss(1.23456), "1.2346");
  EXPECT_EQ(FormatLoss(0.0123456), "0.0123");
  EXPECT_EQ(FormatLoss(12.5), "12.5000");
  EXPECT_EQ(FormatLoss(1.0, false), "-");
}

TEST(FormatAge, SinceTimestamp) {
  google::protobuf::Timestamp t;
  EXPECT_EQ(FormatAge(t, absl::FromUnixSeconds(100)), "-");
  t.set_seconds(1000);
  EXPECT_EQ(FormatAge(t, absl::FromUnixSeconds(1192)), "3m12s");
}

TEST(Names, LowerCaseWithoutPrefix) {
  EXPECT_EQ(StateName(v1::RUNNING), "running");
  EXPECT_EQ(StateName(v1::JOB_STATE_UNSPECIFIED), "unknown");
  EXPECT_EQ(MethodName(v1::ADADHP), "adadhp");
  EXPECT_EQ(PhaseName(v1::LOADING_MODEL), "loading_model");
  EXPECT_TRUE(IsFinal(v1::CANCELLED));
  EXPECT_FALSE(IsFinal(v1::CANCELLING));
}

TEST(FormatTable, ColumnsAlignedNoTrailingBlanks) {
  EXPECT_EQ(FormatTable({{"ID", "STATE"}, {"j-100", "running"}, {"j-2", ""}}),
            "ID     STATE\n"
            "j-100  running\n"
            "j-2\n");
}

}  // namespace
}  // namespace peftd::cli
