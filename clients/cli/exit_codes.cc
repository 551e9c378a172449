#include "clients/cli/exit_codes.h"

namespace peftd::cli {

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
  return ExitCodeFor(static_cast<grpc::StatusCode>(status.code()));
}

const char kExitCodesHelp[] =
    "Exit codes:\n"
    "  0  ok\n"
    "  1  error (any other failure)\n"
    "  2  usage error (unknown command or flag, missing argument)\n"
    "  3  not found (job, dataset or model)\n"
    "  4  invalid argument (job spec, job file or dataset)\n"
    "  5  unauthenticated or permission denied (--token, --token-file, PEFTD_TOKEN)\n"
    "  6  unavailable or timed out (server down or unreachable, --timeout)\n"
    "  7  the watched job ended FAILED\n"
    "  8  the watched job ended CANCELLED\n";

}  // namespace peftd::cli
