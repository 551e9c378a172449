#include "common/host_memory.h"

#include <gtest/gtest.h>

namespace peftd {
namespace {

TEST(HostMemory, ParsesMemTotalInKilobytes) {
  auto total = ParseMemTotal("MemFree:  100 kB\nMemTotal:       24576000 kB\nBuffers: 1 kB\n");
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, int64_t{24576000} * 1024);
}

TEST(HostMemory, RefusesMeminfoWithoutMemTotal) {
  EXPECT_FALSE(ParseMemTotal("MemFree: 100 kB\n").ok());
  EXPECT_FALSE(ParseMemTotal("MemTotal: lots kB\n").ok());
}

TEST(HostMemory, ReadsCgroupLimits) {
  EXPECT_EQ(*ParseCgroupLimit("max\n"), -1);
  EXPECT_EQ(*ParseCgroupLimit("2147483648\n"), int64_t{2147483648});
  EXPECT_EQ(*ParseCgroupLimit("9223372036854771712\n"), -1);  // cgroup v1's "no limit"
  EXPECT_FALSE(ParseCgroupLimit("garbage").ok());
}

TEST(HostMemory, ThisMachineHasSome) {
  auto usable = UsableMemoryBytes();
  ASSERT_TRUE(usable.ok()) << usable.status();
  EXPECT_GT(*usable, int64_t{64} << 20);
}

}  // namespace
}  // namespace peftd
