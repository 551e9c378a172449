// Exit codes peftctl promises to scripts (also in `peftctl --help` and docs/cli.md), and how a
// gRPC status maps onto them.
#ifndef PEFTD_CLIENTS_CLI_EXIT_CODES_H_
#define PEFTD_CLIENTS_CLI_EXIT_CODES_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace peftd::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,         // Anything not listed below.
  kExitUsage = 2,         // Unknown command or flag, missing argument.
  kExitNotFound = 3,      // NOT_FOUND: no such job, dataset or model.
  kExitInvalid = 4,       // INVALID_ARGUMENT: bad spec, job file or dataset.
  kExitAuth = 5,          // UNAUTHENTICATED or PERMISSION_DENIED.
  kExitUnavailable = 6,   // UNAVAILABLE or DEADLINE_EXCEEDED: server down, slow, unreachable.
  kExitJobFailed = 7,     // The watched job ended FAILED.
  kExitJobCancelled = 8,  // The watched job ended CANCELLED.
};

// The exit code for a status (same table for gRPC and absl codes, whose numbers agree).
int ExitCodeFor(grpc::StatusCode code);
int ExitCodeFor(const absl::Status& status);

// The text of the table, for --help.
extern const char kExitCodesHelp[];

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_EXIT_CODES_H_
