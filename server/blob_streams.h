// Moving blob bytes through gRPC streams: an upload written to a temp file of the blob store while
// it is hashed (then adopted under its sha256, or removed), and a stored blob read in chunks.
#ifndef PEFTD_SERVER_BLOB_STREAMS_H_
#define PEFTD_SERVER_BLOB_STREAMS_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"
#include "storage/blob_store.h"

namespace peftd::server {

inline constexpr size_t kBlobChunkBytes = 1 << 20;

// An upload in progress. The temp file is removed unless Commit succeeds.
class BlobUpload {
 public:
  explicit BlobUpload(storage::BlobStore* blobs);
  ~BlobUpload();
  BlobUpload(const BlobUpload&) = delete;
  BlobUpload& operator=(const BlobUpload&) = delete;

  absl::Status Append(absl::string_view bytes);
  int64_t size() const { return size_; }
  // Flushes, fsyncs and checks the size and sha256 (each when given: size >= 0, sha non-empty;
  // DataLoss naming both values otherwise), then stores the blob. Returns its sha256.
  absl::StatusOr<std::string> Commit(int64_t expected_size, const std::string& expected_sha256);

 private:
  storage::BlobStore* blobs_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  Sha256 hash_;
  int64_t size_ = 0;
  bool committed_ = false;
};

// Calls `write(chunk, total_size)` for each chunk of the file of blob `sha256`; stops early (and
// returns Cancelled) when `write` returns false (the client went away).
absl::Status StreamBlob(const storage::BlobStore& blobs, const std::string& sha256,
                        const std::function<bool(absl::string_view, int64_t)>& write);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_BLOB_STREAMS_H_
