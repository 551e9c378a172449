// How an attempt ended, as the CompleteJobRequest the worker sends: SUCCEEDED with the run's
// statistics, CANCELLED when the server asked for it, or FAILED with the error's code, message,
// field, dataset line and who can fix it.
#ifndef PEFTD_WORKER_JOB_COMPLETION_H_
#define PEFTD_WORKER_JOB_COMPLETION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peftd/v1/worker.pb.h"
#include "worker/job_runner.h"

namespace peftd::worker {

// USER for what the user fixes by changing the spec or the data (INVALID_ARGUMENT, NOT_FOUND,
// FAILED_PRECONDITION, OUT_OF_RANGE, RESOURCE_EXHAUSTED), SYSTEM for the rest. An error of moving
// a blob to or from the server (`transfer_failed`) is SYSTEM whatever its code: a full disk on the
// server (RESOURCE_EXHAUSTED) or a dataset it lost (NOT_FOUND) is not the user's to fix.
v1::JobError::Blame BlameFor(absl::StatusCode code, bool transfer_failed);

struct AttemptEnd {
  absl::StatusOr<JobOutputs> result;
  bool cancelled = false;        // the server asked for the cancellation
  bool transfer_failed = false;  // the error came from a fetch or an upload
};

// The request reporting `end` of the attempt of `lease`, with `last_report` (the job's progress).
v1::CompleteJobRequest CompletionOf(const std::string& worker_id, const v1::Lease& lease,
                                    const AttemptEnd& end, v1::ProgressReport last_report);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_JOB_COMPLETION_H_
