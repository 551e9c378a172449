// STUB until branch `svc` lands.
#include "server/auth.h"

namespace peftd::server {

absl::Status Authorize(const grpc::ServerContext& ctx, const std::string& token) {
  if (token.empty()) return absl::OkStatus();
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it != md.end() && std::string(it->second.data(), it->second.size()) == "Bearer " + token) {
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      "missing or wrong bearer token: pass the server's token (peftctl --token or PEFTD_TOKEN)");
}

}  // namespace peftd::server
