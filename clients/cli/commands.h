// The command groups of peftctl. Each Add*Commands registers its subcommands on `app`; the one the
// user picks stores what to run in `*action`, and RunPeftctl runs it after parsing succeeds.
#ifndef PEFTD_CLIENTS_CLI_COMMANDS_H_
#define PEFTD_CLIENTS_CLI_COMMANDS_H_

#include <functional>

#include "CLI/CLI.hpp"
#include "clients/cli/cli_context.h"

namespace peftd::cli {

struct Action {
  std::function<int()> run;  // returns the exit code
  bool needs_server = true;  // false for local-only commands (datasets validate)
};

void AddSubmitCommand(CLI::App& app, Cli& cli, Action* action);    // submit
void AddJobCommands(CLI::App& app, Cli& cli, Action* action);      // list, get, events, cancel
void AddWatchCommand(CLI::App& app, Cli& cli, Action* action);     // watch
void AddDownloadCommand(CLI::App& app, Cli& cli, Action* action);  // download
void AddDatasetCommands(CLI::App& app, Cli& cli,
                        Action* action);  // datasets upload|validate|inspect|list
// `datasets validate`, on the `datasets` group (called by AddDatasetCommands).
void AddDatasetValidateCommand(CLI::App& datasets, Cli& cli, Action* action);
// `datasets inspect` (runs peftd-worker tokenize), on the `datasets` group.
void AddDatasetInspectCommand(CLI::App& datasets, Cli& cli, Action* action);
void AddModelCommands(CLI::App& app, Cli& cli, Action* action);  // models list
void AddHealthCommand(CLI::App& app, Cli& cli, Action* action);  // health
void AddReportCommand(CLI::App& app, Cli& cli, Action* action);  // report
void AddSweepCommands(CLI::App& app, Cli& cli,
                      Action* action);  // sweep submit|get|list|cancel|watch

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_COMMANDS_H_
