// Exit codes peftctl promises to scripts (also in `peftctl --help` and docs/cli.md), and how a
// status maps onto them. One scheme for every command: what was wrong on the command line is 2
// (whether CLI11 or peftctl noticed it), what could not be found is 3 (on the server or on disk),
// what the server (or a job file, or a dataset file) refused as invalid is 4.
#ifndef PEFTD_CLIENTS_CLI_EXIT_CODES_H_
#define PEFTD_CLIENTS_CLI_EXIT_CODES_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace peftd::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,         // Anything not listed below.
  kExitUsage = 2,         // Unknown command or flag, missing argument, malformed flag value.
  kExitNotFound = 3,      // NOT_FOUND: no such job, dataset or model; a missing local file.
  kExitInvalid = 4,       // INVALID_ARGUMENT: bad spec, job file or dataset lines.
  kExitAuth = 5,          // UNAUTHENTICATED or PERMISSION_DENIED.
  kExitUnavailable = 6,   // UNAVAILABLE or DEADLINE_EXCEEDED; health not SERVING.
  kExitJobFailed = 7,     // The watched job ended FAILED.
  kExitJobCancelled = 8,  // The watched job ended CANCELLED.
};

// The exit code for a status (same table for gRPC and absl codes, whose numbers agree); a
// UsageError is 2.
int ExitCodeFor(grpc::StatusCode code);
int ExitCodeFor(const absl::Status& status);

// A malformed value of a command-line flag ("--label: 'team' is not key=value"): an
// InvalidArgument marked so that ExitCodeFor gives kExitUsage.
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

// The text of the table, for --help.
extern const char kExitCodesHelp[];

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_EXIT_CODES_H_
