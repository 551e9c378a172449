// peftctl submit: a job from flags and/or a job file, local datasets uploaded first.
#include <memory>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/jobs_view.h"
#include "clients/cli/spec_flags.h"
#include "clients/cli/spec_request.h"
#include "clients/cli/watch.h"
#include "common/grpc_channel.h"

namespace peftd::cli {
namespace {

struct SubmitArgs {
  SubmitFlags flags;
  bool watch = false;
  WatchOptions watch_options;
};

int RunSubmit(Cli& cli, SubmitArgs& args) {
  v1::CreateJobRequest request;
  if (int code = BuildJobRequest(cli, args.flags, &request)) return code;

  auto context = cli.NewContext();
  v1::Job job;
  grpc::Status status = cli.stub().CreateJob(context.get(), request, &job);
  if (!status.ok()) {
    int code = cli.Fail(status, "submitting the job");
    if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
      cli.err() << "  request id " << request.request_id()
                << " was used for a different spec: drop --request-id or pick a new one\n";
    } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
               status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      cli.err() << "  retrying with --request-id " << request.request_id()
                << " cannot create the job twice\n";
    }
    return code;
  }
  // Validation may fail the job at once (a user error: the spec or the data); nothing to watch.
  const bool failed_at_once = job.state() == v1::FAILED;
  if (cli.json()) {
    if (args.watch && !failed_at_once) {
      cli.out() << "{\"job\":" << Cli::ToJson(job, /*one_line=*/true) << "}\n";
    } else {
      cli.PrintJson(job);
    }
  } else {
    const auto& metadata = context->GetServerInitialMetadata();
    const auto existing = metadata.find(kExistingJobMetadata);
    if (existing != metadata.end() && existing->second == "true") {
      cli.out() << "request id " << job.request_id() << " was used before: returned the existing "
                << "job " << job.id() << " (" << StateName(job.state()) << "), no new job\n";
    } else {
      cli.out() << "submitted job " << job.id() << " (" << StateName(job.state()) << ", request id "
                << job.request_id() << ")\n";
    }
    if (failed_at_once) {
      cli.out() << FormatOutcome(job) << "\n";
    } else if (!args.watch) {
      cli.out() << "  follow it: peftctl watch " << job.id() << "\n";
    }
  }
  if (failed_at_once) {
    return job.error().blame() == v1::JobError::SYSTEM ? kExitJobFailed : kExitInvalid;
  }
  if (!args.watch) return kExitOk;
  return WatchJobUntilDone(cli, job.id(), args.watch_options);
}

}  // namespace

void AddSubmitCommand(CLI::App& app, Cli& cli, Action* action) {
  auto args = std::make_shared<SubmitArgs>();
  SubmitFlags& f = args->flags;
  CLI::App* sub = app.add_subcommand(
      "submit",
      "Submit a fine-tuning job (flags, or -f job.yaml|job.json; flags override the file)");
  AddSpecFlags(sub, f);
  sub->add_flag("--watch", args->watch,
                "Follow the job until it ends (exit 0 SUCCEEDED, 7 FAILED, 8 CANCELLED)");
  sub->add_option("--reconnect-timeout", args->watch_options.reconnect_timeout_seconds,
                  "With --watch: seconds to keep trying to get a dropped stream back");
  sub->callback(
      [&cli, action, args] { action->run = [&cli, args] { return RunSubmit(cli, *args); }; });
}

}  // namespace peftd::cli
