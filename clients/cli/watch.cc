#include "clients/cli/watch.h"

#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/jobs_view.h"
#include "clients/cli/progress_bar.h"

namespace peftd::cli {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Codes of a stream that broke rather than ended: a restarted server, a dropped connection. A
// server shutting down cancels its open streams (CANCELLED); our own Ctrl-C ends the process
// before a status is read, so CANCELLED here is always the server's.
bool IsTransient(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::ABORTED ||
         code == grpc::StatusCode::CANCELLED;
}

// A new attempt (requeued, or leased again and loading the model) starts from a checkpoint: the
// previous attempt's loss, rate and ETA no longer describe it until its first progress report.
bool StartsOver(const v1::JobEvent& e) {
  return !e.has_progress() &&
         (e.state() == v1::QUEUED || (e.state() == v1::RUNNING && e.phase() == v1::LOADING_MODEL));
}

int ExitCodeForState(v1::JobState state) {
  switch (state) {
    case v1::SUCCEEDED:
      return kExitOk;
    case v1::FAILED:
      return kExitJobFailed;
    case v1::CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitError;
  }
}

// Draws the events: one JSON document per line, plain log lines, or a bar redrawn in place.
class EventPrinter {
 public:
  EventPrinter(Cli& cli, const ProgressStyle& style)
      : cli_(cli), live_(cli.out_is_tty() && !cli.json()), line_(style) {}

  void Show(const v1::JobEvent& e) {
    std::ostream& out = cli_.out();
    if (cli_.json()) {
      out << "{\"event\":" << Cli::ToJson(e, /*one_line=*/true) << "}\n";
    } else if (!live_) {
      out << FormatEventLine(e) << "\n";
    } else {
      // Progress events update the bar; the others (and warnings) are worth a line of their own.
      bool log_line =
          !e.message().empty() && (!e.has_progress() || e.level() >= v1::JobEvent::WARNING);
      if (log_line) {
        v1::JobEvent text_only = e;
        text_only.clear_progress();
        out << "\r\x1b[2K" << FormatEventLine(text_only) << "\n";
      }
      line_.Update(e);
      if (line_.has_progress()) {
        out << "\r\x1b[2K" << line_.Render(cli_.terminal_width() - 1);
        bar_drawn_ = true;
      }
    }
    out.flush();
  }

  // Removes the bar so that what follows starts on a clean line.
  void ClearBar() {
    if (bar_drawn_) cli_.out() << "\r\x1b[2K";
    bar_drawn_ = false;
  }

 private:
  Cli& cli_;
  bool live_;
  LiveLine line_;
  bool bar_drawn_ = false;
};

}  // namespace

void LiveLine::Update(const v1::JobEvent& e) {
  if (e.has_progress()) {
    progress_ = e.progress();
    has_progress_ = true;
  } else if (StartsOver(e)) {
    progress_.clear_train_loss();
    progress_.clear_eta_seconds();
    progress_.clear_tokens_per_second();
  }
  state_ = e.state();
  label_ = StateWithPhase(e.state(), e.phase());
}

std::string LiveLine::Render(int width) const {
  ProgressStyle style = style_;
  style.live = state_ == v1::RUNNING;
  return RenderJobProgress(progress_, label_, width, style);
}

int WatchJobUntilDone(Cli& cli, const std::string& job_id, const WatchOptions& options) {
  // The spec says which fields the live line always carries (gate, accuracy, eval); a failed
  // look-up only costs those, the stream reports the real error.
  ProgressStyle style;
  if (cli.out_is_tty() && !cli.json()) {
    auto context = cli.NewContext();
    v1::GetJobRequest get;
    get.set_job_id(job_id);
    v1::Job job;
    if (cli.stub().GetJob(context.get(), get, &job).ok()) style = StyleOf(job);
  }
  EventPrinter printer(cli, style);
  const auto reconnect_window = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(options.reconnect_timeout_seconds));
  int64_t last_id = options.after_event_id;
  v1::JobEvent last_event;
  double backoff = options.initial_backoff_seconds;
  auto give_up_at = SteadyClock::now() + reconnect_window;
  const std::string doing = "watching job " + job_id;

  while (true) {
    auto context = cli.NewContext(/*stream=*/true);
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_after_event_id(last_id);
    auto reader = cli.stub().WatchJob(context.get(), request);
    v1::JobEvent event;
    bool final_seen = false;
    while (reader->Read(&event)) {
      // A resumed stream may repeat the event it resumed after; show each id once.
      if (event.id() != 0 && event.id() <= last_id) continue;
      last_id = std::max(last_id, event.id());
      last_event = event;
      printer.Show(event);
      backoff = options.initial_backoff_seconds;
      give_up_at = SteadyClock::now() + reconnect_window;
      if (IsFinal(event.state())) final_seen = true;
    }
    grpc::Status status = reader->Finish();
    if (final_seen) break;
    if (status.ok()) {
      // The server closed the stream before the end: ask where the job is.
      auto get_context = cli.NewContext();
      v1::GetJobRequest get;
      get.set_job_id(job_id);
      v1::Job job;
      status = cli.stub().GetJob(get_context.get(), get, &job);
      if (status.ok() && IsFinal(job.state())) break;
      if (status.ok()) status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended early");
    }
    if (!IsTransient(status.error_code())) {
      printer.ClearBar();
      return cli.Fail(status, doing);
    }
    if (SteadyClock::now() + std::chrono::duration<double>(backoff) > give_up_at) {
      printer.ClearBar();
      cli.err() << "error: lost the event stream of job " << job_id << " and could not get it "
                << "back within " << FormatDuration(options.reconnect_timeout_seconds)
                << " (--reconnect-timeout)\n";
      cli.Fail(status, doing);
      // Whatever the last code was, the server stayed away: exit 6 as documented.
      return kExitUnavailable;
    }
    if (!cli.json() && !cli.out_is_tty()) {
      cli.err() << "note: event stream lost (" << status.error_message() << "); resuming after "
                << "event " << last_id << " in " << absl::StrFormat("%.2gs", backoff) << "\n";
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
    backoff = std::min(backoff * 2, options.max_backoff_seconds);
  }

  printer.ClearBar();
  auto context = cli.NewContext();
  v1::GetJobRequest get;
  get.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = cli.stub().GetJob(context.get(), get, &job);
  if (!status.ok()) {
    // The stream told us how it ended; the details are a nicety.
    job.set_id(job_id);
    job.set_state(last_event.state());
    *job.mutable_progress() = last_event.progress();
  }
  if (cli.json()) {
    cli.out() << "{\"job\":" << Cli::ToJson(job, /*one_line=*/true) << "}\n";
  } else {
    cli.out() << FormatOutcome(job) << "\n";
  }
  cli.out().flush();
  return ExitCodeForState(job.state());
}

}  // namespace peftd::cli
