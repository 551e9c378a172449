#include "common/chunked_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace peftd {
namespace {

bool AllZero(absl::string_view bytes) {
  return !bytes.empty() && bytes[0] == '\0' &&
         std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0;
}

absl::Status WriteError(const std::string& path, int err) {
  const std::string what = absl::StrCat("writing ", path, ": ", std::strerror(err));
  // A full disk (or quota, or file size limit) is a resource the operator can free.
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return absl::ResourceExhaustedError(what);
  return absl::InternalError(what);
}

}  // namespace

ssize_t ReadSparse(int fd, char* buf, size_t size) {
  const off_t at = ::lseek(fd, 0, SEEK_CUR);
  if (at < 0 || size == 0) return ::read(fd, buf, size);
  off_t data = ::lseek(fd, at, SEEK_DATA);
  if (data < 0 && errno != ENXIO) {  // no SEEK_DATA here (EINVAL): a plain read
    if (::lseek(fd, at, SEEK_SET) < 0) return -1;
    return ::read(fd, buf, size);
  }
  if (data == at) return ::read(fd, buf, size);
  if (data < 0) {  // ENXIO: `at` is in the hole that ends the file, or at its end
    struct stat st;
    if (::fstat(fd, &st) != 0) return -1;
    data = std::max<off_t>(st.st_size, at);
  }
  const size_t n = static_cast<size_t>(std::min<off_t>(static_cast<off_t>(size), data - at));
  std::memset(buf, 0, n);
  if (::lseek(fd, at + static_cast<off_t>(n), SEEK_SET) < 0) return -1;
  return static_cast<ssize_t>(n);
}

absl::Status ReadFileChunks(const std::string& path, const ByteSink& sink) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  std::vector<char> buf(kFileChunkBytes);
  absl::Status st;
  while (st.ok()) {
    const ssize_t n = ReadSparse(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = absl::InternalError(absl::StrCat("reading ", path, ": ", std::strerror(errno)));
      break;
    }
    if (n == 0) break;
    st = sink(absl::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return st;
}

absl::StatusOr<ChunkedFileWriter> ChunkedFileWriter::Create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return WriteError(path, errno);
  return ChunkedFileWriter(fd, path);
}

absl::StatusOr<ChunkedFileWriter> ChunkedFileWriter::CreateUnique(
    const std::string& path_template) {
  std::vector<char> name(path_template.begin(), path_template.end());
  name.push_back('\0');
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) return WriteError(path_template, errno);
  // mkstemp makes 0600; a cached blob is as readable as any other file of the cache.
  ::fchmod(fd, 0644);
  return ChunkedFileWriter(fd, std::string(name.data()));
}

ChunkedFileWriter::ChunkedFileWriter(ChunkedFileWriter&& other) noexcept
    : fd_(other.fd_),
      path_(std::move(other.path_)),
      size_(other.size_),
      position_(other.position_) {
  other.fd_ = -1;
}

ChunkedFileWriter& ChunkedFileWriter::operator=(ChunkedFileWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    size_ = other.size_;
    position_ = other.position_;
    other.fd_ = -1;
  }
  return *this;
}

ChunkedFileWriter::~ChunkedFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status ChunkedFileWriter::Append(absl::string_view bytes) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": already finished"));
  if (AllZero(bytes)) {
    // A new file reads zeros where nothing was written: Finish() sets the size.
    size_ += static_cast<int64_t>(bytes.size());
    return absl::OkStatus();
  }
  if (position_ != size_) {
    if (::lseek(fd_, size_, SEEK_SET) < 0) return WriteError(path_, errno);
    position_ = size_;
  }
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return WriteError(path_, n < 0 ? errno : ENOSPC);
    bytes.remove_prefix(static_cast<size_t>(n));
    size_ += n;
    position_ += n;
  }
  return absl::OkStatus();
}

absl::Status ChunkedFileWriter::Finish() {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": already finished"));
  absl::Status st;
  if (position_ != size_ && ::ftruncate(fd_, size_) != 0) st = WriteError(path_, errno);
  if (st.ok() && ::fsync(fd_) != 0) st = WriteError(path_, errno);
  // close(2) can report a write error the kernel deferred (NFS).
  if (::close(fd_) != 0 && st.ok()) st = WriteError(path_, errno);
  fd_ = -1;
  return st;
}

}  // namespace peftd
