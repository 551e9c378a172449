// STUB until branch `svc` lands.
#include "server/tls.h"

namespace peftd::server {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options) {
  if (!options.tls_cert.empty()) return absl::UnimplementedError("TLS: coming with branch svc");
  return grpc::InsecureServerCredentials();
}

}  // namespace peftd::server
