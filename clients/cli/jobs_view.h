// How jobs and events read for humans: the `list` row, the `get` block, an event log line and the
// one-paragraph outcome `watch` ends with.
#ifndef PEFTD_CLIENTS_CLI_JOBS_VIEW_H_
#define PEFTD_CLIENTS_CLI_JOBS_VIEW_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {

// Header and row of `peftctl list`: ID, NAME, STATE, METHOD, STEP, LOSS, AGE.
std::vector<std::string> JobListHeader();
std::vector<std::string> JobListRow(const v1::Job& job, absl::Time now);

// The `peftctl get` block: one "key: value" line per fact, aligned.
std::string FormatJobDetails(const v1::Job& job, absl::Time now);

// "2024-05-01 12:03:04  INFO   running/training  message  step 40/100  loss 1.234 ..."
std::string FormatEventLine(const v1::JobEvent& event);

// What `watch` prints when the job ends, e.g. "job j-1 succeeded in 3m12s: ..." plus a hint of
// what to do next (download, fix the spec, resubmit).
std::string FormatOutcome(const v1::Job& job);

// "training" or "running (training)": the state and the phase in a few words.
std::string StateWithPhase(v1::JobState state, v1::JobPhase phase);

// The method, with "_s" when the token gate is on (the paper's naming): "lora", "hut_s".
std::string MethodLabel(const v1::JobSpec& spec);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_JOBS_VIEW_H_
