// Files read and written a chunk at a time, with every I/O error turned into a status: how blobs,
// archives and adapters move through the worker, the server and peftctl without ever holding a
// whole file in memory (a merged export can be many GB).
#ifndef PEFTD_COMMON_CHUNKED_FILE_H_
#define PEFTD_COMMON_CHUNKED_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peftd {

inline constexpr size_t kFileChunkBytes = 1 << 20;

// Receives bytes in order; a non-OK status stops the producer and is returned by it.
using ByteSink = std::function<absl::Status(absl::string_view bytes)>;

// read(2) from the current offset of `fd`, except that a hole of a sparse file is filled with
// zeros here instead of by the kernel page by page (an 8 GiB sparse file reads in seconds).
// Returns the bytes read, 0 at the end of the file, -1 with errno set on error.
ssize_t ReadSparse(int fd, char* buf, size_t size);

// Calls `sink` with the file's bytes, kFileChunkBytes at a time (nothing for an empty file).
// NotFound when the file cannot be opened; Internal naming the file on a read error.
absl::Status ReadFileChunks(const std::string& path, const ByteSink& sink);

// A new file written front to back. Every write is checked (a full disk is ResourceExhausted
// naming the file); a chunk of zeros is skipped over instead of written, so a sparse file stays
// sparse on the way through. Finish() fixes the size, fsyncs and closes, and is the only way to
// learn that the file is complete: destroying an unfinished writer closes it and leaves the
// partial file where it is (the caller decides whether to remove it).
class ChunkedFileWriter {
 public:
  // Creates (or truncates) `path`, mode 0644.
  static absl::StatusOr<ChunkedFileWriter> Create(const std::string& path);
  // Creates a file of its own from a mkstemp(3) template (ending in XXXXXX) in the folder where it
  // will be renamed, so concurrent writers of the same target never share a file.
  static absl::StatusOr<ChunkedFileWriter> CreateUnique(const std::string& path_template);

  ChunkedFileWriter(ChunkedFileWriter&& other) noexcept;
  ChunkedFileWriter& operator=(ChunkedFileWriter&& other) noexcept;
  ChunkedFileWriter(const ChunkedFileWriter&) = delete;
  ChunkedFileWriter& operator=(const ChunkedFileWriter&) = delete;
  ~ChunkedFileWriter();

  absl::Status Append(absl::string_view bytes);
  // Sets the size to the bytes appended (trailing zeros were skipped), fsyncs and closes.
  absl::Status Finish();

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }

 private:
  ChunkedFileWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  int fd_ = -1;
  std::string path_;
  int64_t size_ = 0;      // bytes appended
  int64_t position_ = 0;  // the file offset: behind size_ by the zeros skipped since the last write
};

}  // namespace peftd

#endif  // PEFTD_COMMON_CHUNKED_FILE_H_
