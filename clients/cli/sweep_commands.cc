// peftctl sweep submit|get|list|cancel|watch (docs/sweeps.md).
#include <chrono>
#include <map>
#include <memory>
#include <ostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/spec_flags.h"
#include "clients/cli/spec_request.h"
#include "clients/cli/sweeps_view.h"

namespace peftd::cli {
namespace {

constexpr int kMaxPageSize = 1000;

struct WatchArgs {
  double interval_seconds = 1;
  double reconnect_timeout_seconds = 60;
};

struct SubmitArgs {
  SubmitFlags flags;
  std::vector<std::string> grid, list;  // FIELD=V1,V2
  int max_concurrency = 0;
  std::string metric;
  bool watch = false;
  WatchArgs watch_args;
};

int ExitCodeOf(v1::SweepState state) {
  if (state == v1::SWEEP_FAILED) return kExitJobFailed;
  if (state == v1::SWEEP_CANCELLED) return kExitJobCancelled;
  return kExitOk;
}

// Polls the sweep until it ends: one line per child that changes state and the whole sweep's
// progress line whenever it changes (JSON: the sweep, one line per change), then the table. The
// exit code says how it ended (0, 7, 8).
int WatchSweep(Cli& cli, const std::string& sweep_id, const WatchArgs& args) {
  std::map<std::string, v1::JobState> seen;
  std::string last_progress;
  absl::Time unreachable_since = absl::InfiniteFuture();
  while (true) {
    auto context = cli.NewContext();
    v1::GetSweepRequest request;
    request.set_sweep_id(sweep_id);
    v1::Sweep sweep;
    grpc::Status status = cli.stub().GetSweep(context.get(), request, &sweep);
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      // A restarting server: keep asking for a while.
      const absl::Time now = absl::Now();
      if (unreachable_since == absl::InfiniteFuture()) unreachable_since = now;
      if (now - unreachable_since > absl::Seconds(args.reconnect_timeout_seconds)) {
        return cli.Fail(status, "watching sweep " + sweep_id);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    if (!status.ok()) return cli.Fail(status, "watching sweep " + sweep_id);
    unreachable_since = absl::InfiniteFuture();
    bool changed = false;
    for (const v1::SweepChild& c : sweep.children()) {
      auto it = seen.find(c.job_id());
      if (it != seen.end() && it->second == c.state()) continue;
      changed = true;
      if (!cli.json()) {
        cli.out() << "child " << c.index() << " " << c.job_id() << ": "
                  << (it == seen.end() ? "" : StateName(it->second) + " -> ")
                  << StateName(c.state()) << "\n";
      }
      seen[c.job_id()] = c.state();
    }
    const std::string progress = FormatSweepProgress(sweep);
    if (!cli.json() && progress != last_progress) cli.out() << progress << "\n";
    last_progress = progress;
    const bool final = IsFinalSweep(sweep.state());
    if (cli.json() && (changed || final)) cli.PrintJson(sweep, /*one_line=*/true);
    if (final) {
      if (!cli.json()) {
        cli.out() << "sweep " << sweep.id() << " " << SweepStateName(sweep.state()) << "\n\n"
                  << FormatSweepDetails(sweep, absl::Now());
      }
      return ExitCodeOf(sweep.state());
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int64_t>(args.interval_seconds * 1000)));
  }
}

int RunSubmit(Cli& cli, SubmitArgs& args) {
  if (!args.grid.empty() && !args.list.empty()) {
    cli.err() << "error: give --grid or --list axes, not both\n";
    return kExitUsage;
  }
  if (args.grid.empty() && args.list.empty()) {
    cli.err()
        << "error: a sweep needs at least one axis: --grid FIELD=V1,V2 or --list FIELD=V1,V2\n";
    return kExitUsage;
  }
  v1::CreateSweepRequest request;
  v1::SweepSpec* spec = request.mutable_spec();
  spec->set_mode(args.list.empty() ? v1::GRID : v1::LIST);
  for (const std::string& text : args.list.empty() ? args.grid : args.list) {
    auto axis = ParseAxis(text, args.list.empty() ? "--grid" : "--list");
    if (!axis.ok()) return cli.Fail(axis.status());
    *spec->add_axes() = *std::move(axis);
  }
  spec->set_max_concurrency(args.max_concurrency);
  if (!args.metric.empty()) {
    auto metric = ParseSweepMetric(args.metric);
    if (!metric.ok()) return cli.Fail(metric.status());
    spec->set_metric(*metric);
  }
  v1::CreateJobRequest job;
  if (int code = BuildJobRequest(cli, args.flags, &job)) return code;
  *spec->mutable_base() = job.spec();
  request.set_request_id(job.request_id());
  request.set_display_name(job.display_name());
  *request.mutable_labels() = job.labels();

  auto context = cli.NewContext();
  v1::Sweep sweep;
  grpc::Status status = cli.stub().CreateSweep(context.get(), request, &sweep);
  if (!status.ok()) {
    int code = cli.Fail(status, "submitting the sweep");
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      cli.err() << "  retrying with --request-id " << request.request_id()
                << " cannot create the sweep twice\n";
    }
    return code;
  }
  if (cli.json()) {
    cli.PrintJson(sweep, /*one_line=*/args.watch);
  } else {
    cli.out() << "submitted sweep " << sweep.id() << " (" << sweep.children_size()
              << " children, request id " << sweep.request_id() << ")\n";
    if (!args.watch) cli.out() << "  follow it: peftctl sweep watch " << sweep.id() << "\n";
  }
  if (!args.watch) return kExitOk;
  return WatchSweep(cli, sweep.id(), args.watch_args);
}

int RunGet(Cli& cli, const std::string& id) {
  auto context = cli.NewContext();
  v1::GetSweepRequest request;
  request.set_sweep_id(id);
  v1::Sweep sweep;
  grpc::Status status = cli.stub().GetSweep(context.get(), request, &sweep);
  if (!status.ok()) return cli.Fail(status, "getting sweep " + id);
  if (cli.json()) {
    cli.PrintJson(sweep);
  } else {
    cli.out() << FormatSweepDetails(sweep, absl::Now());
  }
  return kExitOk;
}

int RunList(Cli& cli, int limit) {
  v1::ListSweepsRequest request;
  v1::ListSweepsResponse all;
  while (true) {
    const int want = std::min(kMaxPageSize, limit - all.sweeps_size());
    if (want <= 0) break;
    request.set_page_size(want);
    auto context = cli.NewContext();
    v1::ListSweepsResponse page;
    grpc::Status status = cli.stub().ListSweeps(context.get(), request, &page);
    if (!status.ok()) return cli.Fail(status, "listing sweeps");
    for (auto& s : *page.mutable_sweeps()) *all.add_sweeps() = std::move(s);
    all.set_next_page_token(page.next_page_token());
    if (page.next_page_token().empty() || page.sweeps_size() == 0) break;
    request.set_page_token(page.next_page_token());
  }
  if (cli.json()) {
    cli.PrintJson(all);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {SweepListHeader()};
  const absl::Time now = absl::Now();
  for (const v1::Sweep& s : all.sweeps()) rows.push_back(SweepListRow(s, now));
  cli.out() << FormatTable(rows);
  return kExitOk;
}

int RunCancel(Cli& cli, const std::string& id) {
  auto context = cli.NewContext();
  v1::CancelSweepRequest request;
  request.set_sweep_id(id);
  v1::Sweep sweep;
  grpc::Status status = cli.stub().CancelSweep(context.get(), request, &sweep);
  if (!status.ok()) return cli.Fail(status, "cancelling sweep " + id);
  if (cli.json()) {
    cli.PrintJson(sweep);
  } else if (IsFinalSweep(sweep.state()) && !sweep.cancel_requested()) {
    cli.out() << "sweep " << id << " had already ended: " << SweepStateName(sweep.state()) << "\n";
  } else {
    cli.out() << "sweep " << id << " is " << SweepStateName(sweep.state())
              << ": its queued children are cancelled, running ones stop within a step"
              << (IsFinalSweep(sweep.state()) ? "" : " (peftctl sweep watch " + id + ")") << "\n";
  }
  return kExitOk;
}

void AddWatchFlags(CLI::App* sub, WatchArgs& args) {
  sub->add_option("--interval", args.interval_seconds, "Seconds between two looks (default 1)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--reconnect-timeout", args.reconnect_timeout_seconds,
                  "Seconds to keep asking an unreachable server (default 60)");
}

}  // namespace

void AddSweepCommands(CLI::App& app, Cli& cli, Action* action) {
  CLI::App* sweep = app.add_subcommand(
      "sweep", "Sweeps: one base job and axes over its fields (submit, get, list, cancel, watch)");
  sweep->require_subcommand(1);

  auto submit_args = std::make_shared<SubmitArgs>();
  CLI::App* submit = sweep->add_subcommand(
      "submit", "Submit a sweep: the base job as for `submit`, plus --grid or --list axes");
  AddSpecFlags(submit, submit_args->flags);
  submit
      ->add_option("--grid", submit_args->grid,
                   "An axis FIELD=V1,V2,... (repeatable); children are every combination")
      ->expected(1)
      ->take_all();
  submit
      ->add_option("--list", submit_args->list,
                   "An axis FIELD=V1,V2,... (repeatable); child i takes value i of each")
      ->expected(1)
      ->take_all();
  submit
      ->add_option("--max-concurrency", submit_args->max_concurrency,
                   "Children running at once (0 = no limit of the sweep's own)")
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--metric", submit_args->metric,
                     "What names the best child: eval_loss (default), eval_accuracy, "
                     "train_loss, gate_sparsity, tokens_per_second, wall_time");
  submit->add_flag("--watch", submit_args->watch,
                   "Follow the sweep until it ends (exit 0 SUCCEEDED, 7 FAILED, 8 CANCELLED)");
  AddWatchFlags(submit, submit_args->watch_args);
  submit->callback([&cli, action, submit_args] {
    action->run = [&cli, submit_args] { return RunSubmit(cli, *submit_args); };
  });

  auto id = std::make_shared<std::string>();
  CLI::App* get = sweep->add_subcommand("get", "Show a sweep and its comparison table");
  get->add_option("SWEEP", *id, "Sweep id")->required();
  get->callback([&cli, action, id] { action->run = [&cli, id] { return RunGet(cli, *id); }; });

  auto limit = std::make_shared<int>(50);
  CLI::App* list = sweep->add_subcommand("list", "List sweeps, newest first");
  list->add_option("--limit", *limit, "At most this many sweeps (default 50)")
      ->check(CLI::PositiveNumber);
  list->callback(
      [&cli, action, limit] { action->run = [&cli, limit] { return RunList(cli, *limit); }; });

  CLI::App* cancel = sweep->add_subcommand("cancel", "Cancel every child of a sweep (idempotent)");
  cancel->add_option("SWEEP", *id, "Sweep id")->required();
  cancel->callback(
      [&cli, action, id] { action->run = [&cli, id] { return RunCancel(cli, *id); }; });

  auto watch_args = std::make_shared<WatchArgs>();
  CLI::App* watch = sweep->add_subcommand("watch", "Follow a sweep until every child ended");
  watch->add_option("SWEEP", *id, "Sweep id")->required();
  AddWatchFlags(watch, *watch_args);
  watch->callback([&cli, action, id, watch_args] {
    action->run = [&cli, id, watch_args] { return WatchSweep(cli, *id, *watch_args); };
  });
}

}  // namespace peftd::cli
