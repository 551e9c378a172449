#include "server/gang_placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace peftd::server {
namespace {

using ::testing::HasSubstr;

TEST(GangPlacementTest, PlacesRankZeroOnThePreferredWorkerAndTheRestByFreeSlots) {
  const GangPlan plan = PlaceGang(3, "b", {{"a", 1}, {"b", 1}, {"c", 2}, {"d", 0}});
  ASSERT_TRUE(plan.placed());
  EXPECT_EQ(plan.rank_workers, (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_TRUE(plan.waiting_reason.empty());
}

TEST(GangPlacementTest, PreferredWorkerWithoutAFreeSlotDoesNotGetRankZero) {
  const GangPlan plan = PlaceGang(2, "busy", {{"busy", 0}, {"x", 1}, {"y", 1}});
  ASSERT_TRUE(plan.placed());
  EXPECT_EQ(plan.rank_workers, (std::vector<std::string>{"x", "y"}));
}

TEST(GangPlacementTest, NothingIsTakenWhenTooFewWorkersHaveAFreeSlot) {
  const GangPlan plan = PlaceGang(2, "a", {{"a", 1}, {"b", 0}});
  EXPECT_FALSE(plan.placed());
  EXPECT_FALSE(plan.never_fits);
  EXPECT_EQ(plan.waiting_reason,
            "waiting for 2 free slots on distinct workers; 1 free on 1 live worker of 2");
}

TEST(GangPlacementTest, OneRankPerWorker) {
  // Two free slots on one worker are not two ranks: the worker keys attempts by job id.
  const GangPlan plan = PlaceGang(2, "a", {{"a", 2}, {"b", 0}});
  EXPECT_FALSE(plan.placed());
  EXPECT_THAT(plan.waiting_reason, HasSubstr("2 free on 1 live worker of 2"));
}

TEST(GangPlacementTest, AGangWiderThanTheLiveWorkersNeverFits) {
  const GangPlan plan = PlaceGang(3, "a", {{"a", 1}, {"b", 1}});
  EXPECT_FALSE(plan.placed());
  EXPECT_TRUE(plan.never_fits);
  EXPECT_EQ(plan.waiting_reason,
            "needs 3 slots on distinct workers; the server has 2 live workers (start more "
            "workers or lower workers)");
  EXPECT_THAT(PlaceGang(2, "a", {}).waiting_reason, HasSubstr("no live worker"));
}

}  // namespace
}  // namespace peftd::server
