#include "storage/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"

namespace peftd::storage {
namespace {

namespace fs = std::filesystem;
constexpr char kTempPrefix[] = ".tmp-";
void (*crash_hook)(const char* point) = nullptr;

void CrashPoint(const char* point) {
  if (crash_hook != nullptr) crash_hook(point);
}

absl::Status WriteAndSync(const std::string& path, absl::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return absl::InternalError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(w);
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat(path, ": fsync failed"));
}

void SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void SetBlobStoreCrashHookForTest(void (*hook)(const char* point)) { crash_hook = hook; }

bool IsSha256Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<BlobStore> BlobStore::Open(const std::string& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", root, ": ", ec.message()));
  fs::permissions(root, fs::perms::owner_all, fs::perm_options::replace, ec);
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.path().filename().string().rfind(kTempPrefix, 0) == 0) fs::remove(entry.path(), ec);
  }
  return BlobStore(root);
}

std::string BlobStore::PathOf(const std::string& sha256) const {
  return (fs::path(root_) / sha256).string();
}

std::string BlobStore::TempPath() const {
  static std::atomic<uint64_t> counter{0};
  return (fs::path(root_) / absl::StrCat(kTempPrefix, ::getpid(), "-", counter.fetch_add(1)))
      .string();
}

bool BlobStore::Contains(const std::string& sha256) const {
  std::error_code ec;
  return IsSha256Hex(sha256) && fs::exists(PathOf(sha256), ec);
}

absl::StatusOr<std::string> BlobStore::Adopt(const std::string& path, const std::string& expected) {
  ASSIGN_OR_RETURN(std::string sha, Sha256HexOfFile(path));
  std::error_code ec;
  if (!expected.empty() && sha != expected) {
    fs::remove(path, ec);
    return absl::DataLossError(absl::StrCat("content has sha256 ", sha, ", expected ", expected));
  }
  if (Contains(sha)) {
    fs::remove(path, ec);
    ::utimensat(AT_FDCWD, PathOf(sha).c_str(), nullptr, 0);  // a fresh reference: restart the grace
    return sha;
  }
  CrashPoint("before-rename");
  fs::rename(path, PathOf(sha), ec);
  if (ec) return absl::InternalError(absl::StrCat("storing blob ", sha, ": ", ec.message()));
  SyncDir(root_);
  CrashPoint("after-rename");
  return sha;
}

absl::StatusOr<BlobStore::SweepResult> BlobStore::Sweep(const std::set<std::string>& keep,
                                                        absl::Duration grace) const {
  SweepResult result;
  std::error_code ec;
  const absl::Time cutoff = absl::Now() - grace;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!IsSha256Hex(name)) continue;  // temp files and anything else are not ours to judge
    struct stat st;
    if (::stat(entry.path().c_str(), &st) != 0) continue;
    if (keep.count(name) || absl::TimeFromTimespec(st.st_mtim) > cutoff) {
      ++result.kept;
      continue;
    }
    std::error_code rm;
    if (fs::remove(entry.path(), rm)) {
      ++result.removed;
      result.bytes += st.st_size;
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", root_, ": ", ec.message()));
  if (result.removed > 0) SyncDir(root_);
  return result;
}

absl::StatusOr<std::string> BlobStore::Put(absl::string_view bytes) {
  const std::string sha = Sha256Hex(bytes);
  if (Contains(sha)) return sha;
  const std::string tmp = TempPath();
  RETURN_IF_ERROR(WriteAndSync(tmp, bytes));
  return Adopt(tmp, sha);
}

absl::StatusOr<std::string> BlobStore::Get(const std::string& sha256) const {
  if (!IsSha256Hex(sha256))
    return absl::InvalidArgumentError(absl::StrCat("'", sha256, "' is not a sha256"));
  std::ifstream in(PathOf(sha256), std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("no blob ", sha256));
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string bytes = ss.str();
  if (Sha256Hex(bytes) != sha256)
    return absl::DataLossError(absl::StrCat("blob ", sha256, " is corrupt"));
  return bytes;
}

}  // namespace peftd::storage
