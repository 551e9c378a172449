// How much memory this process may use: the host's MemTotal, lowered by the cgroup v2 limit
// (memory.max) or the cgroup v1 limit when one is set. Workers advertise it at Register
// (Device.memory_bytes) so the server can refuse a job that cannot fit anywhere, and check a job's
// estimate against it before they allocate.
#ifndef PEFTD_COMMON_HOST_MEMORY_H_
#define PEFTD_COMMON_HOST_MEMORY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace peftd {

// The usable memory in bytes: min(MemTotal, cgroup limit). Unknown (no /proc) -> NotFound.
absl::StatusOr<int64_t> UsableMemoryBytes();

// The pieces, for tests: MemTotal from /proc/meminfo text (kB lines), and a cgroup limit file's
// text ("max" or a number; -1 for no limit). InvalidArgument on unreadable text.
absl::StatusOr<int64_t> ParseMemTotal(const std::string& meminfo);
absl::StatusOr<int64_t> ParseCgroupLimit(const std::string& text);

}  // namespace peftd

#endif  // PEFTD_COMMON_HOST_MEMORY_H_
