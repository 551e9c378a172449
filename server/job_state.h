// The job state machine (DESIGN.md "The job"): one transition table, used by every operation
// that changes a job's state.
//
//   VALIDATING -> QUEUED | FAILED | CANCELLED
//   QUEUED     -> RUNNING | CANCELLED | FAILED
//   RUNNING    -> SUCCEEDED | FAILED | CANCELLING | QUEUED (lease lost: attempt + 1)
//   CANCELLING -> CANCELLED | FAILED | SUCCEEDED (finished before the worker saw the cancel)
//   SUCCEEDED, FAILED, CANCELLED: final, never change.
#ifndef PEFTD_SERVER_JOB_STATE_H_
#define PEFTD_SERVER_JOB_STATE_H_

#include "absl/status/status.h"
#include "peftd/v1/job.pb.h"

namespace peftd::server {

bool IsFinal(v1::JobState state);
bool CanTransition(v1::JobState from, v1::JobState to);
// FailedPrecondition naming both states when the transition is not allowed.
absl::Status CheckTransition(v1::JobState from, v1::JobState to);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_JOB_STATE_H_
