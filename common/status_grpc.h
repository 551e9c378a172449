// The one conversion between absl::Status and grpc::Status. Canonical codes have the same numbers
// in both, so the code is carried over unchanged and the message kept verbatim. Payloads of the
// absl::Status (keyed by type URL, e.g. "type.googleapis.com/google.rpc.BadRequest") become the
// details of a google.rpc.Status in the gRPC status's error_details, and back.
#ifndef PEFTD_COMMON_STATUS_GRPC_H_
#define PEFTD_COMMON_STATUS_GRPC_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace peftd {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace peftd

#endif  // PEFTD_COMMON_STATUS_GRPC_H_
