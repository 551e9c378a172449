// peftctl datasets upload|list and models list.
#include <memory>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "clients/cli/commands.h"
#include "clients/cli/dataset_upload.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "common/model_modules.h"

namespace peftd::cli {
namespace {

struct UploadArgs {
  std::string path;
  bool allow_bad_lines = false;
};

int RunUpload(Cli& cli, const UploadArgs& args) {
  v1::Dataset dataset;
  grpc::Status status = UploadDatasetFile(cli, args.path, args.allow_bad_lines, &dataset);
  if (!status.ok()) {
    int code = cli.Fail(status, "uploading " + args.path);
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && !args.allow_bad_lines) {
      cli.err() << "  fix those lines and upload again (or keep them for jobs with "
                   "skip_bad_lines: --allow-bad-lines)\n";
    }
    return code;
  }
  if (cli.json()) {
    cli.PrintJson(dataset);
  } else {
    cli.out() << "uploaded " << DescribeDataset(dataset) << "\n";
  }
  return kExitOk;
}

int RunListDatasets(Cli& cli) {
  auto context = cli.NewContext();
  v1::ListDatasetsResponse response;
  grpc::Status status = cli.stub().ListDatasets(context.get(), {}, &response);
  if (!status.ok()) return cli.Fail(status, "listing datasets");
  if (cli.json()) {
    cli.PrintJson(response);
    return kExitOk;
  }
  if (response.datasets_size() == 0) {
    cli.out() << "no datasets (peftctl datasets upload FILE adds one)\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "FILENAME", "FORMAT", "LINES", "SIZE", "AGE"}};
  const absl::Time now = absl::Now();
  for (const auto& d : response.datasets()) {
    rows.push_back({d.id(), d.filename().empty() ? "-" : d.filename(),
                    d.format().empty() ? "-" : d.format(),
                    d.bad_lines() > 0 ? absl::StrCat(d.lines(), " (", d.bad_lines(), " bad)")
                                      : std::to_string(d.lines()),
                    FormatBytes(d.size_bytes()), FormatAge(d.create_time(), now)});
  }
  cli.out() << FormatTable(rows);
  return kExitOk;
}

// The task types a checkpoint of `architecture` trains as ("-" for one peftd does not load).
std::string TaskTypes(const std::string& architecture) {
  const std::vector<std::string> types = model::SupportedTaskTypes(architecture);
  return types.empty() ? "-" : absl::StrJoin(types, ",");
}

int RunListModels(Cli& cli) {
  auto context = cli.NewContext();
  v1::ListModelsResponse response;
  grpc::Status status = cli.stub().ListModels(context.get(), {}, &response);
  if (!status.ok()) return cli.Fail(status, "listing models");
  if (cli.json()) {
    cli.PrintJson(response);
    return kExitOk;
  }
  if (response.models_size() == 0) {
    cli.out() << "no models under the server's model root\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ARCHITECTURE", "TASKS", "PARAMETERS", "SIZE"}};
  for (const auto& m : response.models()) {
    rows.push_back({m.name(), m.architecture().empty() ? "-" : m.architecture(),
                    TaskTypes(m.architecture()),
                    m.parameters() > 0 ? FormatCount(static_cast<double>(m.parameters())) : "-",
                    FormatBytes(m.size_bytes())});
  }
  cli.out() << FormatTable(rows);
  return kExitOk;
}

}  // namespace

void AddDatasetCommands(CLI::App& app, Cli& cli, Action* action) {
  CLI::App* datasets = app.add_subcommand("datasets", "Upload, validate and list datasets");
  datasets->require_subcommand(1);

  auto args = std::make_shared<UploadArgs>();
  CLI::App* upload = datasets->add_subcommand(
      "upload", "Upload a JSONL file; the server checks every line and names the bad ones");
  upload->add_option("FILE", args->path, "JSONL file")->required();
  upload->add_flag("--allow-bad-lines", args->allow_bad_lines,
                   "Store a file with bad lines (counted) for jobs with skip_bad_lines");
  upload->callback(
      [&cli, action, args] { action->run = [&cli, args] { return RunUpload(cli, *args); }; });

  AddDatasetValidateCommand(*datasets, cli, action);
  AddDatasetInspectCommand(*datasets, cli, action);

  CLI::App* list = datasets->add_subcommand("list", "List the datasets on the server");
  list->callback([&cli, action] { action->run = [&cli] { return RunListDatasets(cli); }; });
}

void AddModelCommands(CLI::App& app, Cli& cli, Action* action) {
  CLI::App* models = app.add_subcommand("models", "Models available as base_model");
  models->require_subcommand(1);
  CLI::App* list = models->add_subcommand("list", "List the models under the server's model root");
  list->callback([&cli, action] { action->run = [&cli] { return RunListModels(cli); }; });
}

}  // namespace peftd::cli
