// peftctl list, get, events, cancel.
#include <memory>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/jobs_view.h"
#include "clients/cli/spec_flags.h"
#include "clients/cli/watch.h"
#include "common/status.h"

namespace peftd::cli {
namespace {

constexpr int kMaxPageSize = 1000;

struct ListArgs {
  std::vector<std::string> states;  // names, comma-separated or repeated
  std::vector<std::string> labels;  // key=value
  int limit = 50;
  std::string page_token;
  bool all = false;
};

int RunList(Cli& cli, const ListArgs& args) {
  v1::ListJobsRequest request;
  for (const std::string& entry : args.states) {
    for (absl::string_view name : absl::StrSplit(entry, ',', absl::SkipWhitespace())) {
      auto state = ParseState(name);
      if (!state.ok())
        return cli.Fail(UsageError(absl::StrCat("--state: ", state.status().message())));
      request.add_states(*state);
    }
  }
  for (const std::string& label : args.labels) {
    auto kv = ParseLabel(label, "--label");
    if (!kv.ok()) return cli.Fail(UsageError(kv.status().message()));
    (*request.mutable_labels())[kv->first] = kv->second;
  }
  request.set_page_token(args.page_token);
  // Pages until --limit jobs (or every job with --all) are in hand.
  v1::ListJobsResponse all;
  while (true) {
    int want = args.all ? kMaxPageSize : std::min(kMaxPageSize, args.limit - all.jobs_size());
    if (want <= 0) break;
    request.set_page_size(want);
    auto context = cli.NewContext();
    v1::ListJobsResponse page;
    grpc::Status status = cli.stub().ListJobs(context.get(), request, &page);
    if (!status.ok()) return cli.Fail(status, "listing jobs");
    for (auto& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    all.set_next_page_token(page.next_page_token());
    if (page.next_page_token().empty() || page.jobs_size() == 0) break;
    request.set_page_token(page.next_page_token());
  }
  if (cli.json()) {
    cli.PrintJson(all);
    return kExitOk;
  }
  if (all.jobs_size() == 0) {
    cli.out() << "no jobs" << (request.states_size() || request.labels_size() ? " match" : "")
              << "\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {JobListHeader()};
  const absl::Time now = absl::Now();
  for (const auto& job : all.jobs()) rows.push_back(JobListRow(job, now));
  cli.out() << FormatTable(rows);
  if (!all.next_page_token().empty()) {
    cli.err() << "more jobs: --page-token " << all.next_page_token() << " (or --all)\n";
  }
  return kExitOk;
}

int RunGet(Cli& cli, const std::string& id) {
  auto context = cli.NewContext();
  v1::GetJobRequest request;
  request.set_job_id(id);
  v1::Job job;
  grpc::Status status = cli.stub().GetJob(context.get(), request, &job);
  if (!status.ok()) return cli.Fail(status, "getting job " + id);
  if (cli.json()) {
    cli.PrintJson(job);
  } else {
    cli.out() << FormatJobDetails(job, absl::Now());
  }
  return kExitOk;
}

int RunEvents(Cli& cli, const std::string& id, int64_t after, int limit) {
  v1::ListJobEventsResponse all;
  v1::ListJobEventsRequest request;
  request.set_job_id(id);
  request.set_after_event_id(after);
  while (limit <= 0 || all.events_size() < limit) {
    int want = limit <= 0 ? kMaxPageSize : std::min(kMaxPageSize, limit - all.events_size());
    request.set_page_size(want);
    auto context = cli.NewContext();
    v1::ListJobEventsResponse page;
    grpc::Status status = cli.stub().ListJobEvents(context.get(), request, &page);
    if (!status.ok()) return cli.Fail(status, "listing the events of job " + id);
    for (auto& e : *page.mutable_events()) *all.add_events() = std::move(e);
    // A short page is the last one.
    if (page.events_size() < want || page.events_size() == 0) break;
    request.set_after_event_id(all.events(all.events_size() - 1).id());
  }
  if (cli.json()) {
    cli.PrintJson(all);
    return kExitOk;
  }
  for (const auto& e : all.events()) cli.out() << FormatEventLine(e) << "\n";
  if (all.events_size() == 0) cli.out() << "no events\n";
  return kExitOk;
}

int RunCancel(Cli& cli, const std::string& id) {
  // The state before: CancelJob answers CANCELLED both for a queued job it just cancelled and
  // for one cancelled long ago, and the two deserve different words.
  v1::JobState before = v1::JOB_STATE_UNSPECIFIED;
  {
    auto get_context = cli.NewContext();
    v1::GetJobRequest get;
    get.set_job_id(id);
    v1::Job job;
    if (cli.stub().GetJob(get_context.get(), get, &job).ok()) before = job.state();
  }
  auto context = cli.NewContext();
  v1::CancelJobRequest request;
  request.set_job_id(id);
  v1::Job job;
  grpc::Status status = cli.stub().CancelJob(context.get(), request, &job);
  if (!status.ok()) return cli.Fail(status, "cancelling job " + id);
  if (cli.json()) {
    cli.PrintJson(job);
    return kExitOk;
  }
  if (IsFinal(before)) {
    // Cancel is idempotent: a job that already ended stays as it was.
    cli.out() << "job " << id << " had already ended: " << StateName(job.state()) << "\n";
    return kExitOk;
  }
  switch (job.state()) {
    case v1::CANCELLING:
      cli.out() << "job " << id << " is cancelling: the worker stops within a step "
                << "(peftctl watch " << id << " to see it end)\n";
      break;
    case v1::CANCELLED:
      cli.out() << "job " << id << " cancelled\n";
      break;
    default:
      // Cancel is idempotent: a job that already ended stays as it was.
      cli.out() << "job " << id << " had already ended: " << StateName(job.state()) << "\n";
      break;
  }
  return kExitOk;
}

}  // namespace

void AddJobCommands(CLI::App& app, Cli& cli, Action* action) {
  auto list = std::make_shared<ListArgs>();
  CLI::App* ls = app.add_subcommand("list", "List jobs, newest first");
  ls->add_option("--state", list->states,
                 "Only jobs in these states (comma-separated or repeated: queued,running,...)")
      ->check(CheckStateFlag);
  ls->add_option("--label", list->labels, "Only jobs with this key=value label (repeatable)")
      ->check(CheckLabelFlag);
  ls->add_option("--limit", list->limit, "At most this many jobs (default 50)")
      ->check(CLI::PositiveNumber);
  ls->add_option("--page-token", list->page_token, "Continue after a previous listing");
  ls->add_flag("--all", list->all, "Every job, all pages");
  ls->callback(
      [&cli, action, list] { action->run = [&cli, list] { return RunList(cli, *list); }; });

  auto get_id = std::make_shared<std::string>();
  CLI::App* get = app.add_subcommand("get", "Show one job: state, progress, error, adapter");
  get->add_option("ID", *get_id, "Job id")->required();
  get->callback(
      [&cli, action, get_id] { action->run = [&cli, get_id] { return RunGet(cli, *get_id); }; });

  struct EventsArgs {
    std::string id;
    int64_t after = 0;
    int limit = 0;
  };
  auto events = std::make_shared<EventsArgs>();
  CLI::App* ev = app.add_subcommand("events", "Print a job's event log");
  ev->add_option("ID", events->id, "Job id")->required();
  ev->add_option("--after", events->after, "Only events after this event id");
  ev->add_option("--limit", events->limit, "At most this many events (default: all)");
  ev->callback([&cli, action, events] {
    action->run = [&cli, events] {
      return RunEvents(cli, events->id, events->after, events->limit);
    };
  });

  auto cancel_id = std::make_shared<std::string>();
  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a job (idempotent)");
  cancel->add_option("ID", *cancel_id, "Job id")->required();
  cancel->callback([&cli, action, cancel_id] {
    action->run = [&cli, cancel_id] { return RunCancel(cli, *cancel_id); };
  });
}

void AddWatchCommand(CLI::App& app, Cli& cli, Action* action) {
  struct WatchArgs {
    std::string id;
    WatchOptions options;
  };
  auto args = std::make_shared<WatchArgs>();
  CLI::App* watch = app.add_subcommand(
      "watch", "Follow a job until it ends; the exit code tells how (0, 7 FAILED, 8 CANCELLED)");
  watch->add_option("ID", args->id, "Job id")->required();
  watch->add_option("--after", args->options.after_event_id,
                    "Resume after this event id (default: from the start)");
  watch->add_option("--reconnect-timeout", args->options.reconnect_timeout_seconds,
                    "Seconds to keep trying to get a dropped stream back (default 60)");
  watch->callback([&cli, action, args] {
    action->run = [&cli, args] { return WatchJobUntilDone(cli, args->id, args->options); };
  });
}

}  // namespace peftd::cli
