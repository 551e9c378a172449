// STUB until branch `svc` lands: server credentials from the TLS flags (insecure without them).
#ifndef PEFTD_SERVER_TLS_H_
#define PEFTD_SERVER_TLS_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "server/options.h"

namespace peftd::server {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_TLS_H_
