#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace peftd::server {
namespace {

constexpr char kHowTo[] =
    "pass the server's token with `peftctl --token TOKEN` (or PEFTD_TOKEN=TOKEN); workers take "
    "`peftd-worker --token-file FILE`; over gRPC send metadata `authorization: Bearer TOKEN`";

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Comparing digests hides the length as well as the content of the expected token.
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

absl::Status AuthorizeMetadata(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                               const std::string& token) {
  if (token.empty()) return absl::OkStatus();
  const auto range = metadata.equal_range("authorization");
  if (range.first == range.second) {
    return absl::UnauthenticatedError(
        absl::StrCat("this server requires a bearer token and the call carried none: ", kHowTo));
  }
  // gRPC lower-cases metadata keys; several `authorization` entries are refused rather than
  // guessing which one counts.
  if (std::next(range.first) != range.second) {
    return absl::UnauthenticatedError(
        absl::StrCat("more than one authorization header; send exactly one: ", kHowTo));
  }
  const absl::string_view value(range.first->second.data(), range.first->second.size());
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        absl::StrCat("the authorization header is not `Bearer <token>`: ", kHowTo));
  }
  const absl::string_view presented = absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (!ConstantTimeEquals(presented, token)) {
    return absl::UnauthenticatedError(
        absl::StrCat("the bearer token is wrong (check it against the server's "
                     "--auth-token-file): ",
                     kHowTo));
  }
  return absl::OkStatus();
}

absl::Status Authorize(const grpc::ServerContextBase& ctx, const std::string& token) {
  if (token.empty()) return absl::OkStatus();
  return AuthorizeMetadata(ctx.client_metadata(), token);
}

}  // namespace peftd::server
