// Content-addressed blobs (datasets, checkpoints, adapters) as files named by their sha256 under
// a root folder. A blob is written to a temp file, fsynced and renamed, so a crash never leaves a
// half file under a blob's name; reads verify size and hash. Thread-safe.
#ifndef PEFTD_STORAGE_BLOB_STORE_H_
#define PEFTD_STORAGE_BLOB_STORE_H_

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace peftd::storage {

class BlobStore {
 public:
  // Creates `root` (owner-only permissions) when missing and removes temp files a crash left.
  static absl::StatusOr<BlobStore> Open(const std::string& root);

  // Stores `bytes`; returns their sha256 (hex). Storing the same bytes twice is a no-op.
  absl::StatusOr<std::string> Put(absl::string_view bytes);
  // Moves an already written file into the store (for streamed uploads): `expected_sha256`, when
  // not empty, must match or the file is removed and DataLoss returned. When the blob exists
  // already, its modification time is renewed: Sweep's grace counts from the last Adopt.
  absl::StatusOr<std::string> Adopt(const std::string& path,
                                    const std::string& expected_sha256 = "");
  // The bytes of a blob, checked against its name; NotFound / DataLoss otherwise.
  absl::StatusOr<std::string> Get(const std::string& sha256) const;
  bool Contains(const std::string& sha256) const;
  // Path of a blob (whether or not it exists), for streaming reads.
  std::string PathOf(const std::string& sha256) const;
  struct SweepResult {
    int64_t removed = 0;  // blobs deleted
    int64_t bytes = 0;    // their size
    int64_t kept = 0;     // blobs left
  };
  // Deletes every blob whose sha256 is not in `keep` and whose file is older than `grace` (so a
  // blob adopted for an upload whose row is not written yet survives). Temp files are left to
  // Open. Not atomic with Adopt: the grace must exceed the time between an Adopt and the record
  // that refers to it (milliseconds).
  absl::StatusOr<SweepResult> Sweep(const std::set<std::string>& keep, absl::Duration grace) const;
  // A fresh temp path inside the store's folder (same filesystem, so Adopt can rename).
  std::string TempPath() const;

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

// Test hook for crash tests: when set, Adopt calls it with "before-rename" once the file is
// complete and synced but not yet under its blob name, and with "after-rename" once it is (a test
// _exit()s from it to simulate a crash there). Not thread-safe; null in production.
void SetBlobStoreCrashHookForTest(void (*hook)(const char* point));

// Whether `s` is 64 lowercase hex digits.
bool IsSha256Hex(absl::string_view s);

}  // namespace peftd::storage

#endif  // PEFTD_STORAGE_BLOB_STORE_H_
