#include "worker/job_completion.h"

#include <utility>

#include "common/status_payload.h"

namespace peftd::worker {

v1::JobError::Blame BlameFor(absl::StatusCode code, bool transfer_failed) {
  if (transfer_failed) return v1::JobError::SYSTEM;
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:
      return v1::JobError::USER;
    default:
      return v1::JobError::SYSTEM;
  }
}

v1::CompleteJobRequest CompletionOf(const std::string& worker_id, const v1::Lease& lease,
                                    const AttemptEnd& end, v1::ProgressReport last_report) {
  v1::CompleteJobRequest req;
  req.set_worker_id(worker_id);
  req.set_job_id(lease.job_id());
  req.set_attempt(lease.attempt());
  const absl::Status outcome = end.result.status();
  if (end.result.ok()) {
    req.set_final_state(v1::SUCCEEDED);
    *last_report.mutable_train_stats() = end.result->train_stats;
    *last_report.mutable_validation_stats() = end.result->validation_stats;
    last_report.set_trainable_parameters(end.result->trainable_parameters);
    last_report.set_total_parameters(end.result->total_parameters);
  } else if (outcome.code() == absl::StatusCode::kCancelled && end.cancelled) {
    req.set_final_state(v1::CANCELLED);
  } else {
    req.set_final_state(v1::FAILED);
    v1::JobError* error = req.mutable_error();
    error->set_code(static_cast<int>(outcome.code()));
    error->set_message(std::string(outcome.message()));
    error->set_blame(BlameFor(outcome.code(), end.transfer_failed));
    error->set_field(FieldOf(outcome));
    error->set_line(LineOf(outcome));
  }
  *req.mutable_last_report() = std::move(last_report);
  return req;
}

}  // namespace peftd::worker
