// POSIX tar archives of a folder of regular files: how adapters and merged models travel between
// worker, server and peftctl (DownloadAdapter streams one uncompressed tar). Both directions
// stream: members are read from disk and extracted to disk a chunk at a time, so an archive of any
// size passes through in constant memory.
//
// Format: ustar headers; a member whose size does not fit ustar's 11 octal digits (8 GiB and more,
// e.g. the fp32 weights of a 2B-parameter merged model) or whose path does not fit its 100-byte
// name field gets a PAX extended header ('x') with a "size=" / "path=" record before it, as GNU
// tar and libarchive write and read them.
#ifndef PEFTD_COMMON_TAR_H_
#define PEFTD_COMMON_TAR_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chunked_file.h"

namespace peftd {

// Fills up to `size` bytes of `buf` with the next bytes of an archive; returns how many, 0 at its
// end.
using TarSource = std::function<absl::StatusOr<size_t>(char* buf, size_t size)>;

// Writes the archive of every regular file under `dir` (recursively, sorted, paths relative to
// `dir`, mode 0644, mtime 0, so the same folder always gives the same bytes) to `sink`, in pieces
// of at most kFileChunkBytes. A file that changes size while it is archived is an error naming it.
absl::Status WriteTar(const std::string& dir, const ByteSink& sink);
// The same into a new file at `archive_path` (zeros are left as holes, see ChunkedFileWriter).
absl::Status WriteTarFile(const std::string& dir, const std::string& archive_path);

// Extracts an archive made by WriteTar (regular files and folders, ustar or PAX size/path
// records) into `dir`. Refuses absolute paths, `..` components, links and other member types,
// headers whose checksum is wrong, and truncated archives, naming the entry. A refused archive
// may leave part of its files in `dir`: extract into a fresh folder and remove it on error.
absl::Status ExtractTar(const TarSource& source, const std::string& dir);
absl::Status ExtractTarFile(const std::string& archive_path, const std::string& dir);

}  // namespace peftd

#endif  // PEFTD_COMMON_TAR_H_
