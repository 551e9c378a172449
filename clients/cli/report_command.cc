// peftctl report JOB|SWEEP -o report.html: one self-contained HTML file
// (clients/cli/report_html.h).
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/report_html.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kPageSize = 1000;

struct ReportArgs {
  std::string id;
  std::string output;  // default: ID.html
  bool force = false;
};

// Every event of `job_id`, oldest first.
grpc::Status AllEvents(Cli& cli, const std::string& job_id, std::vector<v1::JobEvent>* out) {
  v1::ListJobEventsRequest request;
  request.set_job_id(job_id);
  request.set_page_size(kPageSize);
  while (true) {
    auto context = cli.NewContext();
    v1::ListJobEventsResponse page;
    grpc::Status status = cli.stub().ListJobEvents(context.get(), request, &page);
    if (!status.ok()) return status;
    for (auto& e : *page.mutable_events()) out->push_back(std::move(e));
    if (page.events_size() < kPageSize) return grpc::Status::OK;
    request.set_after_event_id(out->back().id());
  }
}

int RunReport(Cli& cli, const ReportArgs& args) {
  const std::string path = args.output.empty() ? args.id + ".html" : args.output;
  if (fs::exists(path) && !args.force) {
    cli.err() << "error: " << path
              << " already exists: pass --force to replace it, or -o another file\n";
    return kExitError;
  }
  Report report;
  const bool sweep = absl::StartsWith(args.id, "sweep-");
  if (sweep) {
    auto context = cli.NewContext();
    v1::GetSweepRequest request;
    request.set_sweep_id(args.id);
    v1::Sweep s;
    grpc::Status status = cli.stub().GetSweep(context.get(), request, &s);
    if (!status.ok()) return cli.Fail(status, "getting sweep " + args.id);
    std::map<std::string, std::vector<v1::JobEvent>> events;
    for (const v1::SweepChild& c : s.children()) {
      status = AllEvents(cli, c.job_id(), &events[c.job_id()]);
      if (!status.ok()) return cli.Fail(status, "listing the events of job " + c.job_id());
    }
    report = SweepReportHtml(s, events);
  } else {
    auto context = cli.NewContext();
    v1::GetJobRequest request;
    request.set_job_id(args.id);
    v1::Job job;
    grpc::Status status = cli.stub().GetJob(context.get(), request, &job);
    if (!status.ok()) return cli.Fail(status, "getting job " + args.id);
    std::vector<v1::JobEvent> events;
    status = AllEvents(cli, args.id, &events);
    if (!status.ok()) return cli.Fail(status, "listing the events of job " + args.id);
    report = JobReportHtml(job, events);
  }
  // Written beside the target and renamed: the file appears whole or not at all.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << report.html;
    if (!out.good()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      cli.err() << "error: cannot write " << path << "\n";
      return kExitError;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    cli.err() << "error: cannot write " << path << ": " << ec.message() << "\n";
    return kExitError;
  }
  if (cli.json()) {
    nlohmann::json j = {{"path", path},
                        {"id", args.id},
                        {"kind", sweep ? "sweep" : "job"},
                        {"bytes", report.html.size()},
                        {"charts", report.charts}};
    cli.out() << j.dump(2) << "\n";
  } else {
    cli.out() << "wrote " << path << " (" << (sweep ? "sweep " : "job ") << args.id << ", "
              << report.charts << " charts, "
              << FormatBytes(static_cast<int64_t>(report.html.size())) << ")\n";
  }
  return kExitOk;
}

}  // namespace

void AddReportCommand(CLI::App& app, Cli& cli, Action* action) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* sub = app.add_subcommand(
      "report", "Write one self-contained HTML file (inline SVG) of a job's or a sweep's curves");
  sub->add_option("ID", args->id, "Job id, or sweep id (sweep-...)")->required();
  sub->add_option("-o,--output", args->output, "The HTML file to write (default: ID.html)");
  sub->add_flag("--force", args->force, "Replace the file if it exists");
  sub->callback(
      [&cli, action, args] { action->run = [&cli, args] { return RunReport(cli, *args); }; });
}

}  // namespace peftd::cli
