#include "server/blob_streams.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"

namespace peftd::server {

BlobUpload::BlobUpload(storage::BlobStore* blobs) : blobs_(blobs), temp_path_(blobs->TempPath()) {
  file_ = std::fopen(temp_path_.c_str(), "wbe");
}

BlobUpload::~BlobUpload() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_path_, ec);
  }
}

absl::Status BlobUpload::Append(absl::string_view bytes) {
  if (file_ == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot create ", temp_path_, ": ", std::strerror(errno)));
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("writing the upload failed: ", std::strerror(errno), " (disk full?)"));
  }
  hash_.Update(bytes);
  size_ += static_cast<int64_t>(bytes.size());
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobUpload::Commit(int64_t expected_size,
                                               const std::string& expected_sha256) {
  if (file_ == nullptr) return absl::InternalError(absl::StrCat("cannot create ", temp_path_));
  const bool flushed = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  std::fclose(file_);
  file_ = nullptr;
  if (!flushed) return absl::ResourceExhaustedError("writing the upload failed (disk full?)");
  if (expected_size >= 0 && size_ != expected_size) {
    return absl::DataLossError(absl::StrCat("received ", size_, " bytes, the header announced ",
                                            expected_size, "; upload again"));
  }
  const std::string sha = hash_.HexDigest();
  if (!expected_sha256.empty() && sha != expected_sha256) {
    return absl::DataLossError(absl::StrCat("received bytes have sha256 ", sha,
                                            ", the header announced ", expected_sha256,
                                            "; upload again"));
  }
  auto stored = blobs_->Adopt(temp_path_, sha);
  if (stored.ok()) committed_ = true;
  return stored;
}

absl::Status StreamBlob(const storage::BlobStore& blobs, const std::string& sha256,
                        const std::function<bool(absl::string_view, int64_t)>& write) {
  if (!storage::IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(absl::StrCat("sha256: '", sha256, "' is not a sha256"));
  }
  const std::string path = blobs.PathOf(sha256);
  std::FILE* f = std::fopen(path.c_str(), "rbe");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("no blob ", sha256, " on this server"));
  std::error_code ec;
  const int64_t total = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  std::vector<char> buf(kBlobChunkBytes);
  absl::Status st;
  bool any = false;
  while (true) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), f);
    if (n < buf.size() && std::ferror(f)) {
      // Not a short blob that ends OK: the client would take it for a transfer error.
      st = absl::InternalError(absl::StrCat("reading blob ", sha256, ": ", std::strerror(errno)));
      break;
    }
    if (n == 0 && any) break;
    any = true;
    if (!write(absl::string_view(buf.data(), n), total)) {
      st = absl::CancelledError("the client went away");
      break;
    }
    if (n < buf.size()) break;
  }
  std::fclose(f);
  return st;
}

}  // namespace peftd::server
