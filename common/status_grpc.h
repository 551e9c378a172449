// The one conversion between absl::Status and grpc::Status. Canonical codes have the same numbers
// in both, so the code is carried over unchanged and the message kept verbatim.
#ifndef PEFTD_COMMON_STATUS_GRPC_H_
#define PEFTD_COMMON_STATUS_GRPC_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace peftd {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace peftd

#endif  // PEFTD_COMMON_STATUS_GRPC_H_
