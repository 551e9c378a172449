// STUB until branch `svc` lands: bearer-token check of an RPC.
#ifndef PEFTD_SERVER_AUTH_H_
#define PEFTD_SERVER_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"

namespace peftd::server {

// OK when `token` is empty or the call carries "authorization: Bearer <token>"; UNAUTHENTICATED
// otherwise.
absl::Status Authorize(const grpc::ServerContext& ctx, const std::string& token);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_AUTH_H_
