// gRPC server credentials from --tls-cert / --tls-key / --tls-client-ca.
#ifndef PEFTD_SERVER_TLS_H_
#define PEFTD_SERVER_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/statusor.h"
#include "server/options.h"

namespace peftd::server {

// Insecure credentials when no certificate is configured. Otherwise TLS with the certificate
// chain and key; with a client CA, clients must present a certificate it signed (mutual TLS).
// The PEM files are read and parsed here so that a bad file fails at startup with
// InvalidArgument / NotFound naming the flag and the file, not later inside gRPC; a key that does
// not belong to the certificate is refused too.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_TLS_H_
