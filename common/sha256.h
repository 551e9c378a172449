// SHA-256 (OpenSSL's libcrypto), as lowercase hex: how blobs are named and verified.
#ifndef PEFTD_COMMON_SHA256_H_
#define PEFTD_COMMON_SHA256_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peftd {

std::string Sha256Hex(absl::string_view data);
absl::StatusOr<std::string> Sha256HexOfFile(const std::string& path);

// Incremental hashing of streamed bytes.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(absl::string_view data);
  // Hex digest; the object must not be updated afterwards.
  std::string HexDigest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace peftd

#endif  // PEFTD_COMMON_SHA256_H_
