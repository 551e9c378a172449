// The progress lines peftctl draws: a job's training progress (watch) and a file transfer
// (upload). Pure functions of the numbers and the terminal width, so they are tested as strings;
// the caller redraws them in place on a TTY.
#ifndef PEFTD_CLIENTS_CLI_PROGRESS_BAR_H_
#define PEFTD_CLIENTS_CLI_PROGRESS_BAR_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {

// "[=======>      ]  40/100  40%  loss 1.234  eval 1.301  1.20k tok/s  sparsity 35.0%  ETA 1m20s"
// `label` (e.g. "training") goes first when not empty. Never longer than `width` bytes: when the
// line does not fit, the bar shrinks (to 10 cells), then fields are dropped, least useful first
// (tok/s, sparsity, eval, label, loss, percentage, ETA), then the bar; the step count always
// stays. Sparsity is shown only when the gate reports it (> 0), eval only once has_eval is set.
std::string RenderJobProgress(const v1::JobProgress& progress, absl::string_view label, int width);

// The same numbers without the bar, for log lines:
// "step 40/100  loss 1.234  eval 1.301  1.20k tok/s  sparsity 35.0%  ETA 1m20s".
std::string SummarizeProgress(const v1::JobProgress& progress);

// "train.jsonl [=====>     ] 12.0 MiB/30.0 MiB  40%  4.0 MiB/s  ETA 4s", same fitting rules
// (rate and ETA are dropped first, then the name). `elapsed_seconds` > 0 enables rate and ETA.
std::string RenderTransfer(absl::string_view name, int64_t done, int64_t total,
                           double elapsed_seconds, int width);

// A bar of exactly `cells` characters between brackets: "[===>   ]"; fraction clamped to [0, 1].
std::string RenderBar(double fraction, int cells);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_PROGRESS_BAR_H_
