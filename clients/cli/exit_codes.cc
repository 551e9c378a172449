#include "clients/cli/exit_codes.h"

#include "absl/strings/cord.h"

namespace peftd::cli {
namespace {

// The payload that marks a UsageError; never leaves the process.
constexpr char kUsagePayload[] = "peftctl/usage";

}  // namespace

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitInvalid;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitAuth;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    default:
      return kExitError;
  }
}

int ExitCodeFor(const absl::Status& status) {
  if (IsUsageError(status)) return kExitUsage;
  return ExitCodeFor(static_cast<grpc::StatusCode>(status.code()));
}

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

const char kExitCodesHelp[] =
    "Exit codes:\n"
    "  0  ok\n"
    "  1  error (any other failure)\n"
    "  2  usage error (unknown command or flag, missing argument, malformed flag value)\n"
    "  3  not found (job, dataset or model on the server; a file named on the command line)\n"
    "  4  invalid argument (job spec, job file or dataset lines)\n"
    "  5  unauthenticated or permission denied (--token, --token-file, PEFTD_TOKEN)\n"
    "  6  unavailable or timed out (server down or unreachable, --timeout); health not SERVING\n"
    "  7  the watched job ended FAILED\n"
    "  8  the watched job ended CANCELLED\n";

}  // namespace peftd::cli
