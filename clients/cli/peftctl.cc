#include "clients/cli/peftctl.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "CLI/CLI.hpp"
#include "clients/cli/cli_context.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"

namespace peftd::cli {
namespace {

constexpr int kDefaultTerminalWidth = 80;

int TerminalWidth(int fd) {
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    int n = std::atoi(columns);
    if (n > 0) return n;
  }
  return kDefaultTerminalWidth;
}

void AddGlobalOptions(CLI::App& app, GlobalOptions& o) {
  app.add_option("--server", o.server, "peftd address host:port")
      ->envname("PEFTD_SERVER")
      ->capture_default_str();
  app.add_option("--token", o.token, "Bearer token (or --token-file, or PEFTD_TOKEN)");
  app.add_option("--token-file", o.token_file, "File holding the bearer token");
  app.add_option("--tls-ca", o.tls_ca, "PEM file of the CA that signed the server (turns TLS on)");
  app.add_option("--tls-cert", o.tls_cert, "Client certificate PEM (mutual TLS, with --tls-key)");
  app.add_option("--tls-key", o.tls_key, "Client private key PEM");
  app.add_option("--tls-server-name", o.tls_server_name,
                 "Name to check in the server certificate (default: the host of --server)");
  app.add_flag("--json", o.json,
               "Machine output on stdout: protobuf JSON (proto field names); streams print one "
               "JSON document per line");
  app.add_option_function<double>(
         "--timeout",
         [&o](double seconds) {
           o.timeout_seconds = seconds;
           o.timeout_given = true;
         },
         "Seconds to wait for each call (default 30; streams wait forever unless given)")
      ->check(CLI::PositiveNumber);
}

// Global flags that take a value: their value is not a command name.
bool TakesValue(const std::string& arg) {
  static const char* const kWithValue[] = {"--server",          "--token",    "--token-file",
                                           "--tls-ca",          "--tls-cert", "--tls-key",
                                           "--tls-server-name", "--timeout"};
  for (const char* flag : kWithValue) {
    if (arg == flag) return true;
  }
  return false;
}

// The first word of the command line that should name a (sub)command but names none, with the
// names it could have been: "unknown command 'frobnicate'; the commands are: submit, ...".
// Empty when the words name known commands. CLI11 only says "A subcommand is required".
std::string UnknownCommand(CLI::App& app, int argc, const char* const* argv) {
  CLI::App* level = &app;
  std::string path = "peftctl";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return "";
    if (!arg.empty() && arg[0] == '-') {
      if (TakesValue(arg)) ++i;
      continue;
    }
    std::vector<std::string> names;
    CLI::App* next = nullptr;
    for (CLI::App* sub : level->get_subcommands([](CLI::App*) { return true; })) {
      names.push_back(sub->get_name());
      if (sub->get_name() == arg) next = sub;
    }
    if (names.empty()) return "";  // a leaf command: the rest are its arguments
    if (next == nullptr) {
      std::string text = "unknown command '" + arg + "' of " + path + "; the commands are:";
      for (size_t n = 0; n < names.size(); ++n) text += (n ? ", " : " ") + names[n];
      return text;
    }
    level = next;
    path += " " + arg;
  }
  return "";
}

}  // namespace

int RunPeftctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  const bool out_tty = &out == &std::cout && ::isatty(STDOUT_FILENO);
  const bool err_tty = &err == &std::cerr && ::isatty(STDERR_FILENO);
  Cli cli(out, err, out_tty, err_tty, TerminalWidth(out_tty ? STDOUT_FILENO : STDERR_FILENO));

  CLI::App app{"peftctl: submit, follow and collect fine-tuning jobs on a peftd server", "peftctl"};
  app.footer(std::string("\n") + kExitCodesHelp +
             "\nExamples:\n"
             "  peftctl submit --model tiny-llama --method lora --train train.jsonl --watch\n"
             "  peftctl submit -f job.yaml --steps 200 --label team=nlp\n"
             "  peftctl list --state running,queued\n"
             "  peftctl download JOB_ID -o my-adapter\n"
             "  peftctl sweep submit -f job.yaml --grid token_gate.lambda=1e-6,1e-5 --watch\n"
             "Docs: docs/cli.md\n");
  app.require_subcommand(1);
  // Global flags are accepted after the command too: `peftctl get ID --json`.
  app.fallthrough();
  AddGlobalOptions(app, cli.options());

  Action action;
  AddSubmitCommand(app, cli, &action);
  AddJobCommands(app, cli, &action);
  AddWatchCommand(app, cli, &action);
  AddDownloadCommand(app, cli, &action);
  AddDatasetCommands(app, cli, &action);
  AddModelCommands(app, cli, &action);
  AddHealthCommand(app, cli, &action);
  AddSweepCommands(app, cli, &action);
  AddReportCommand(app, cli, &action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    out << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp& e) {
    out << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      app.exit(e, out, err);
      return kExitOk;
    }
    const std::string unknown = UnknownCommand(app, argc, argv);
    err << "error: " << (unknown.empty() ? std::string(e.what()) : unknown) << "\n";
    err << "  run `peftctl --help` (or `peftctl COMMAND --help`) for the usage\n";
    return kExitUsage;
  }
  if (!action.run) {
    err << "error: no command given; run `peftctl --help`\n";
    return kExitUsage;
  }
  if (action.needs_server) {
    absl::Status connected = cli.Connect();
    if (!connected.ok()) return cli.Fail(connected);
  }
  return action.run();
}

}  // namespace peftd::cli
