// Minimal POSIX ustar archives of a folder of regular files: how adapters travel between worker,
// server and peftctl (DownloadAdapter streams one uncompressed tar).
#ifndef PEFTD_COMMON_TAR_H_
#define PEFTD_COMMON_TAR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace peftd {

// Archives every regular file under `dir` (recursively, sorted, paths relative to `dir`, mode
// 0644, mtime 0 so the same folder always gives the same bytes).
absl::StatusOr<std::string> TarDirectory(const std::string& dir);

// Extracts an archive made by TarDirectory (regular files and folders only) into `dir`.
// Refuses absolute paths, `..` components, links and truncated archives, naming the entry.
absl::Status UntarToDirectory(const std::string& archive, const std::string& dir);

}  // namespace peftd

#endif  // PEFTD_COMMON_TAR_H_
