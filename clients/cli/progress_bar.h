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

// What the job is, beyond its numbers: which fields its line always carries.
struct ProgressStyle {
  bool gated = false;           // token gate on: sparsity and mean tau, 0 included
  bool classification = false;  // seq_cls: eval accuracy
  bool has_validation = false;  // eval loss ("-" until the first evaluation)
  // The job is running: ETA and tok/s mean something. Off for queued, cancelling and ended jobs,
  // whose last ETA and rate are stale.
  bool live = true;
};

// The style of `job`: gate, task and validation from its spec, live while RUNNING.
ProgressStyle StyleOf(const v1::Job& job);

// "[=======>      ]   40/100   40%  loss 1.2345  eval 1.3010  sparsity 35.0%  tau 0.0123  ETA
// 1m20s" `label` (e.g. "running/training") goes first when not empty. Every field has a fixed width
// and the line's layout (which fields, how wide the bar) depends only on the style and the width,
// not on the numbers, so redraws do not jump. Never longer than `width` bytes: when the line does
// not fit, the bar shrinks (to 10 cells), then fields are dropped, least useful first (tok/s,
// label, percentage, eval and tau, accuracy, sparsity, loss, ETA), then the bar; the step count
// always stays. Losses have four decimals.
std::string RenderJobProgress(const v1::JobProgress& progress, absl::string_view label, int width,
                              const ProgressStyle& style = {});

// The same numbers without the bar and the padding, for log lines and `get`:
// "step 40/100  loss 1.2345  eval 1.3010  1.20k tok/s  sparsity 35.0%  tau 0.0123  ETA 1m20s".
std::string SummarizeProgress(const v1::JobProgress& progress, const ProgressStyle& style = {});

// The mean of the modules' thresholds tau (0 without gate statistics).
double MeanTau(const v1::JobProgress& progress);

// "train.jsonl [=====>     ] 12.0 MiB/30.0 MiB  40%  4.0 MiB/s  ETA 4s", same fitting rules
// (rate and ETA are dropped first, then the name). `elapsed_seconds` > 0 enables rate and ETA.
std::string RenderTransfer(absl::string_view name, int64_t done, int64_t total,
                           double elapsed_seconds, int width);

// A bar of exactly `cells` characters between brackets: "[===>   ]"; fraction clamped to [0, 1].
std::string RenderBar(double fraction, int cells);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_PROGRESS_BAR_H_
