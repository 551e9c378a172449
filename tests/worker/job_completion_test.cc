// The report of an attempt's end: state, error fields and who is to blame.
#include "worker/job_completion.h"

#include <gtest/gtest.h>

#include "common/status_payload.h"

namespace peftd::worker {
namespace {

v1::Lease LeaseOf(const std::string& job_id, int attempt) {
  v1::Lease lease;
  lease.set_job_id(job_id);
  lease.set_attempt(attempt);
  return lease;
}

TEST(JobCompletion, BlameFollowsTheCodeUnlessATransferFailed) {
  EXPECT_EQ(BlameFor(absl::StatusCode::kInvalidArgument, false), v1::JobError::USER);
  EXPECT_EQ(BlameFor(absl::StatusCode::kResourceExhausted, false), v1::JobError::USER);
  EXPECT_EQ(BlameFor(absl::StatusCode::kInternal, false), v1::JobError::SYSTEM);
  for (auto code : {absl::StatusCode::kResourceExhausted, absl::StatusCode::kNotFound,
                    absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss}) {
    EXPECT_EQ(BlameFor(code, true), v1::JobError::SYSTEM) << absl::StatusCodeToString(code);
  }
}

TEST(JobCompletion, AFailureCarriesItsCodeFieldLineAndBlame) {
  v1::ProgressReport report;
  report.mutable_progress()->set_step(7);
  const absl::Status error =
      WithLine(WithField(absl::InvalidArgumentError("bad record"), "training_dataset_id"), 12);
  const auto req = CompletionOf("w-1", LeaseOf("job-1", 3), {error, false, false}, report);
  EXPECT_EQ(req.worker_id(), "w-1");
  EXPECT_EQ(req.job_id(), "job-1");
  EXPECT_EQ(req.attempt(), 3);
  EXPECT_EQ(req.final_state(), v1::FAILED);
  EXPECT_EQ(req.error().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(req.error().message(), "bad record");
  EXPECT_EQ(req.error().field(), "training_dataset_id");
  EXPECT_EQ(req.error().line(), 12);
  EXPECT_EQ(req.error().blame(), v1::JobError::USER);
  EXPECT_EQ(req.last_report().progress().step(), 7);

  const auto disk_full = CompletionOf(
      "w-1", LeaseOf("job-1", 3),
      {absl::ResourceExhaustedError("uploading the adapter: disk full"), false, true}, report);
  EXPECT_EQ(disk_full.error().blame(), v1::JobError::SYSTEM);
}

TEST(JobCompletion, CancelledOnlyWhenTheServerAskedAndSuccessCarriesTheStats) {
  const auto asked = CompletionOf("w", LeaseOf("j", 1), {absl::CancelledError("stop"), true, false},
                                  v1::ProgressReport());
  EXPECT_EQ(asked.final_state(), v1::CANCELLED);
  EXPECT_FALSE(asked.has_error());
  const auto unasked = CompletionOf(
      "w", LeaseOf("j", 1), {absl::CancelledError("stop"), false, false}, v1::ProgressReport());
  EXPECT_EQ(unasked.final_state(), v1::FAILED);

  JobOutputs out;
  out.trainable_parameters = 42;
  out.total_parameters = 1000;
  out.train_stats.set_records(5);
  const auto done = CompletionOf("w", LeaseOf("j", 1), {out, false, false}, v1::ProgressReport());
  EXPECT_EQ(done.final_state(), v1::SUCCEEDED);
  EXPECT_EQ(done.last_report().trainable_parameters(), 42);
  EXPECT_EQ(done.last_report().total_parameters(), 1000);
  EXPECT_EQ(done.last_report().train_stats().records(), 5);
}

}  // namespace
}  // namespace peftd::worker
