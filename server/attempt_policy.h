// What a lost attempt costs a job (docs/concepts.md "Attempts and retries"). The scheduler calls
// ApplyLostAttempt when a lease ends without a report from its worker; the function only changes
// the job's counters, error, attempt and progress and says where the job goes next, so every rule
// is tested here without a scheduler.
//
// The rules tell the infrastructure failing from a job that kills its workers:
//  - an attempt that made checkpoint progress of its own costs nothing (and ends a crash streak);
//  - an attempt lost to a server restart costs nothing;
//  - otherwise it is charged against spec.max_attempts, and when its worker process died (not
//    just went silent) twice in a row, the job fails at once: no crash loops.
#ifndef PEFTD_SERVER_ATTEMPT_POLICY_H_
#define PEFTD_SERVER_ATTEMPT_POLICY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "peftd/v1/job.pb.h"

namespace peftd::server {

// Why an attempt's lease ended without a final report.
enum class LossCause {
  kWorkerSilent,     // no heartbeat for lease_timeout: partition, SIGSTOP, machine gone
  kWorkerDied,       // the worker process died: its supervisor saw it exit, or it registered
                     // again without the job
  kServerRestarted,  // the server restarted and no worker re-claimed the lease in time
};

struct AttemptLoss {
  LossCause cause = LossCause::kWorkerSilent;
  std::string
      why;  // for the event and the error, e.g. "worker local-0 killed by signal 9 (SIGKILL)"
};

// Consecutive worker deaths without progress that fail a job.
inline constexpr int kMaxCrashesWithoutProgress = 2;

// The newest checkpoint of a job (highest step; a later attempt wins a tie), null when none:
// what the next attempt resumes from.
const v1::Checkpoint* NewestCheckpoint(const v1::Job& job);

// Whether the job's current attempt recorded a checkpoint of its own.
bool AttemptMadeProgress(const v1::Job& job);

// Removes from job.checkpoints all but the `keep` newest (by step, then attempt) and returns the
// removed ones as (attempt, step) for the store. keep < 1 keeps one.
std::vector<std::pair<int, int64_t>> TrimCheckpoints(v1::Job& job, int keep);

// Updates `job` (RUNNING, its lease just lost) for `loss`: the counters; on a requeue attempt + 1
// and progress.step back to the newest checkpoint; on failure its error. Returns the state the job
// goes to (QUEUED or FAILED) and sets `*message` to the event text.
v1::JobState ApplyLostAttempt(v1::Job& job, const AttemptLoss& loss, std::string* message);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_ATTEMPT_POLICY_H_
