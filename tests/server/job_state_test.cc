// Every pair of states, allowed or refused, against the table of DESIGN.md.
#include "server/job_state.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace peftd::server {
namespace {

TEST(JobState, EveryPairIsAllowedExactlyWhenTheTableSaysSo) {
  const std::set<std::pair<v1::JobState, v1::JobState>> allowed = {
      {v1::VALIDATING, v1::QUEUED},    {v1::VALIDATING, v1::FAILED},
      {v1::VALIDATING, v1::CANCELLED}, {v1::QUEUED, v1::RUNNING},
      {v1::QUEUED, v1::CANCELLED},     {v1::QUEUED, v1::FAILED},
      {v1::RUNNING, v1::SUCCEEDED},    {v1::RUNNING, v1::FAILED},
      {v1::RUNNING, v1::CANCELLING},   {v1::RUNNING, v1::QUEUED},
      {v1::CANCELLING, v1::CANCELLED}, {v1::CANCELLING, v1::FAILED},
      {v1::CANCELLING, v1::SUCCEEDED},
  };
  int checked = 0;
  for (int f = v1::JobState_MIN; f <= v1::JobState_MAX; ++f) {
    for (int t = v1::JobState_MIN; t <= v1::JobState_MAX; ++t) {
      const auto from = static_cast<v1::JobState>(f), to = static_cast<v1::JobState>(t);
      const bool want = allowed.count({from, to}) > 0;
      EXPECT_EQ(CanTransition(from, to), want)
          << v1::JobState_Name(from) << " -> " << v1::JobState_Name(to);
      EXPECT_EQ(CheckTransition(from, to).ok(), want);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 64);
}

TEST(JobState, FinalStatesNeverChange) {
  for (auto s : {v1::SUCCEEDED, v1::FAILED, v1::CANCELLED}) {
    EXPECT_TRUE(IsFinal(s));
    for (int t = v1::JobState_MIN; t <= v1::JobState_MAX; ++t)
      EXPECT_FALSE(CanTransition(s, static_cast<v1::JobState>(t)));
  }
  EXPECT_FALSE(IsFinal(v1::CANCELLING));
  EXPECT_EQ(CheckTransition(v1::SUCCEEDED, v1::RUNNING).message(),
            "a job in state SUCCEEDED cannot become RUNNING");
}

}  // namespace
}  // namespace peftd::server
