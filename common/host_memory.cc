#include "common/host_memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace peftd {
namespace {

// cgroup v1 writes a huge page-aligned number for "no limit".
constexpr int64_t kNoLimitAbove = int64_t{1} << 60;

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

absl::StatusOr<int64_t> ParseMemTotal(const std::string& meminfo) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    if (!absl::StartsWith(line, "MemTotal:")) continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line.substr(9), ' ', absl::SkipWhitespace());
    int64_t kb = 0;
    if (parts.empty() || !absl::SimpleAtoi(parts[0], &kb) || kb <= 0) break;
    return kb * 1024;
  }
  return absl::InvalidArgumentError("/proc/meminfo: no readable MemTotal line");
}

absl::StatusOr<int64_t> ParseCgroupLimit(const std::string& text) {
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t == "max") return -1;
  int64_t bytes = 0;
  if (!absl::SimpleAtoi(t, &bytes) || bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cgroup memory limit: cannot read '", t, "'"));
  }
  return bytes >= kNoLimitAbove ? -1 : bytes;
}

absl::StatusOr<int64_t> UsableMemoryBytes() {
  std::string text;
  if (!ReadFile("/proc/meminfo", &text)) return absl::NotFoundError("/proc/meminfo: unreadable");
  auto total = ParseMemTotal(text);
  if (!total.ok()) return total.status();
  int64_t usable = *total;
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (!ReadFile(path, &text)) continue;
    auto limit = ParseCgroupLimit(text);
    if (limit.ok() && *limit > 0) usable = std::min(usable, *limit);
  }
  return usable;
}

}  // namespace peftd
