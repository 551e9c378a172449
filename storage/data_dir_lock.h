// One peftd per data dir: an exclusive flock on <data_dir>/peftd.lock, held for the life of the
// process (the kernel drops it when the process dies, kill -9 included, so there is no stale
// lock to clean up). The file holds the holder's pid, which the refusal names.
#ifndef PEFTD_STORAGE_DATA_DIR_LOCK_H_
#define PEFTD_STORAGE_DATA_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace peftd::storage {

class DataDirLock {
 public:
  // Takes the lock; FailedPrecondition naming the data dir and the holder's pid when another
  // process holds it, Internal when the lock file cannot be opened.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& data_dir);
  ~DataDirLock();  // releases it
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace peftd::storage

#endif  // PEFTD_STORAGE_DATA_DIR_LOCK_H_
