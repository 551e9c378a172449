// Following a job: the WatchJob stream, resumed after the last event id when it drops, until the
// job reaches a final state. Shared by `watch` and `submit --watch`.
#ifndef PEFTD_CLIENTS_CLI_WATCH_H_
#define PEFTD_CLIENTS_CLI_WATCH_H_

#include <string>

#include "clients/cli/cli_context.h"
#include "clients/cli/progress_bar.h"

namespace peftd::cli {

// The live line of `watch` on a terminal: the last progress, updated by each event. A new
// attempt (the job requeued, or leased again and loading its model) drops the previous attempt's
// loss, rate and ETA until its own first report; a job that is not running shows no rate or ETA.
class LiveLine {
 public:
  explicit LiveLine(const ProgressStyle& style) : style_(style) {}
  void Update(const v1::JobEvent& event);
  bool has_progress() const { return has_progress_; }
  // The line for a terminal of `width` columns.
  std::string Render(int width) const;

 private:
  ProgressStyle style_;
  v1::JobProgress progress_;
  bool has_progress_ = false;
  v1::JobState state_ = v1::JOB_STATE_UNSPECIFIED;
  std::string label_;
};

struct WatchOptions {
  // Give up (exit 6) after this long without getting a stream back.
  double reconnect_timeout_seconds = 60;
  // First wait before reconnecting; doubles up to max_backoff_seconds, reset by every event.
  double initial_backoff_seconds = 0.25;
  double max_backoff_seconds = 5;
  // Resume after this event id (0 = from the start).
  int64_t after_event_id = 0;
};

// Prints the events (a live bar on a TTY, plain lines otherwise, {"event": ...} lines with
// --json) and the outcome ({"job": ...} with --json). Returns 0 when the job SUCCEEDED, 7 when it
// FAILED, 8 when CANCELLED, or the exit code of the error that stopped the watch.
int WatchJobUntilDone(Cli& cli, const std::string& job_id, const WatchOptions& options);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_WATCH_H_
