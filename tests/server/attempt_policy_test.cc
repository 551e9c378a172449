// Every rule of server/attempt_policy.h on a job proto (the scenarios retries.scenario and
// artifacts.scenario run the same rules through the scheduler).
#include "server/attempt_policy.h"

#include <gtest/gtest.h>

#include "absl/status/status.h"

namespace peftd::server {
namespace {

v1::Job Running(int attempt, int max_attempts = 3) {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::RUNNING);
  job.set_attempt(attempt);
  job.mutable_spec()->set_max_attempts(max_attempts);
  job.mutable_progress()->set_step(77);
  return job;
}

void AddCheckpoint(v1::Job& job, int attempt, int64_t step) {
  v1::Checkpoint* cp = job.add_checkpoints();
  cp->set_attempt(attempt);
  cp->set_step(step);
}

TEST(AttemptPolicy, ProgressOfItsOwnCostsNothingAndEndsACrashStreak) {
  for (LossCause cause :
       {LossCause::kWorkerSilent, LossCause::kWorkerDied, LossCause::kServerRestarted}) {
    v1::Job job = Running(5);
    job.set_attempts_charged(2);
    job.set_crashes_without_progress(1);
    AddCheckpoint(job, 4, 50);
    AddCheckpoint(job, 5, 100);
    std::string message;
    EXPECT_EQ(ApplyLostAttempt(job, {cause, "w"}, &message), v1::QUEUED);
    EXPECT_EQ(job.attempt(), 6);
    EXPECT_EQ(job.attempts_charged(), 2);
    EXPECT_EQ(job.crashes_without_progress(), 0);
    EXPECT_EQ(job.progress().step(), 100);  // back to what the next attempt resumes from
    EXPECT_NE(message.find("resuming from the checkpoint of step 100"), std::string::npos);
  }
}

TEST(AttemptPolicy, AnEarlierAttemptsCheckpointIsNotProgress) {
  v1::Job job = Running(2);
  AddCheckpoint(job, 1, 50);
  EXPECT_FALSE(AttemptMadeProgress(job));
  std::string message;
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kWorkerSilent, "w"}, &message), v1::QUEUED);
  EXPECT_EQ(job.attempts_charged(), 1);
  EXPECT_EQ(job.progress().step(), 50);
}

TEST(AttemptPolicy, AServerRestartCostsNothing) {
  v1::Job job = Running(1, /*max_attempts=*/1);
  std::string message;
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kServerRestarted, "r"}, &message), v1::QUEUED);
  EXPECT_EQ(job.attempts_charged(), 0);
  EXPECT_EQ(job.crashes_without_progress(), 0);
  EXPECT_EQ(job.progress().step(), 0);
}

TEST(AttemptPolicy, SilentWorkersSpendMaxAttempts) {
  v1::Job job = Running(1, /*max_attempts=*/2);
  std::string message;
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kWorkerSilent, "w1 silent"}, &message), v1::QUEUED);
  EXPECT_EQ(job.crashes_without_progress(), 0);
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kWorkerSilent, "w2 silent"}, &message), v1::FAILED);
  EXPECT_EQ(job.attempts_charged(), 2);
  EXPECT_EQ(job.attempt(), 2);  // a failed job keeps the attempt it failed in
  EXPECT_EQ(job.error().blame(), v1::JobError::SYSTEM);
  EXPECT_EQ(job.error().code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_NE(job.error().message().find("without progress 2 times (max_attempts 2; last: w2 silent"),
            std::string::npos)
      << job.error().message();
}

TEST(AttemptPolicy, TwoDeathsInARowWithoutProgressAreACrashLoop) {
  v1::Job job = Running(1, /*max_attempts=*/10);
  std::string message;
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kWorkerDied, "a"}, &message), v1::QUEUED);
  // A silent loss in between neither counts as a death nor ends the streak.
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kWorkerSilent, "b"}, &message), v1::QUEUED);
  EXPECT_EQ(job.crashes_without_progress(), 1);
  EXPECT_EQ(job.progress().step(), 0);   // no checkpoint: the next attempt starts over
  job.mutable_progress()->set_step(77);  // where the third attempt's worker dies
  EXPECT_EQ(ApplyLostAttempt(job, {LossCause::kWorkerDied, "signal 9 (Killed)"}, &message),
            v1::FAILED);
  EXPECT_EQ(job.crashes_without_progress(), 2);
  EXPECT_NE(job.error().message().find("crash loop"), std::string::npos);
  EXPECT_NE(job.error().message().find("at step 77 (signal 9 (Killed))"), std::string::npos)
      << job.error().message();
  EXPECT_EQ(message, "failed: " + job.error().message());
}

TEST(AttemptPolicy, TrimKeepsTheNewestCheckpoints) {
  v1::Job job = Running(3);
  AddCheckpoint(job, 2, 30);
  AddCheckpoint(job, 1, 10);
  AddCheckpoint(job, 3, 30);  // same step, later attempt: newer
  AddCheckpoint(job, 2, 20);
  const auto dropped = TrimCheckpoints(job, 2);
  EXPECT_EQ(dropped, (std::vector<std::pair<int, int64_t>>{{1, 10}, {2, 20}}));
  ASSERT_EQ(job.checkpoints_size(), 2);
  EXPECT_EQ(NewestCheckpoint(job)->attempt(), 3);
  EXPECT_TRUE(TrimCheckpoints(job, 2).empty());
  EXPECT_EQ(TrimCheckpoints(job, 0).size(), 1u);  // at least the newest stays
}

}  // namespace
}  // namespace peftd::server
