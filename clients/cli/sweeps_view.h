// How sweeps read for humans: the comparison table of `peftctl sweep get` and `sweep watch`, the
// `sweep list` row, and the parsing of `--grid` / `--list` axes.
#ifndef PEFTD_CLIENTS_CLI_SWEEPS_VIEW_H_
#define PEFTD_CLIENTS_CLI_SWEEPS_VIEW_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "peftd/v1/sweep.pb.h"

namespace peftd::cli {

// "running", "succeeded", ... (the SweepState without its prefix).
std::string SweepStateName(v1::SweepState state);
// "eval_loss", "tokens_per_second", ...
std::string SweepMetricName(v1::SweepMetric metric);
absl::StatusOr<v1::SweepMetric> ParseSweepMetric(absl::string_view name);

// "FIELD=V1,V2,..." -> an axis. For a list field (target_modules) one value's entries are joined
// by '+'. InvalidArgument naming `flag` when there is no '=' or no value.
absl::StatusOr<v1::SweepAxis> ParseAxis(absl::string_view text, absl::string_view flag);

// The `sweep get` block: a few "key: value" lines, then one row per child (its values, state,
// step, eval loss or accuracy, sparsity, trainable %, tokens/s, wall time; the best marked *).
std::string FormatSweepDetails(const v1::Sweep& sweep, absl::Time now);

// The whole sweep in one line, for `sweep watch`: children ended, running and queued, and the
// optimizer steps done of those whose step count is known, e.g.
// "progress: 1/4 ended, 1 running, 2 queued; steps 90/120 (75%) of the 2 started".
std::string FormatSweepProgress(const v1::Sweep& sweep);

// Header and row of `peftctl sweep list`: ID, NAME, STATE, CHILDREN (done/total), BEST, AGE.
std::vector<std::string> SweepListHeader();
std::vector<std::string> SweepListRow(const v1::Sweep& sweep, absl::Time now);

bool IsFinalSweep(v1::SweepState state);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_SWEEPS_VIEW_H_
