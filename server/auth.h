// Bearer-token check for every RPC of both services (DESIGN.md "JobService": authentication).
// Clients send gRPC metadata `authorization: Bearer <token>` (peftctl --token / PEFTD_TOKEN, and
// the worker's lease loop); the comparison runs in constant time.
#ifndef PEFTD_SERVER_AUTH_H_
#define PEFTD_SERVER_AUTH_H_

#include <grpcpp/server_context.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace peftd::server {

// OK when `token` is empty (auth off) or the call carries `authorization: Bearer <token>` (the
// scheme is case-insensitive). Otherwise Unauthenticated, saying how to pass the token. Call it
// first in every handler, before touching the store. Takes ServerContextBase so it serves both
// the sync (grpc::ServerContext) and the callback (grpc::CallbackServerContext) APIs.
absl::Status Authorize(const grpc::ServerContextBase& ctx, const std::string& token);

// The same check on raw client metadata (what the context holds).
absl::Status AuthorizeMetadata(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                               const std::string& token);

// Equality whose running time depends on neither the content nor the length of `a` and `b`.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_AUTH_H_
