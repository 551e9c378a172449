#include "clients/cli/dataset_upload.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "clients/cli/format.h"
#include "clients/cli/progress_bar.h"
#include "common/sha256.h"

namespace peftd::cli {

namespace fs = std::filesystem;

absl::StatusOr<DatasetRef> ResolveDatasetRef(const std::string& value, const std::string& base_dir,
                                             absl::string_view what) {
  std::error_code ec;
  if (fs::is_regular_file(value, ec)) return DatasetRef{value, ""};
  if (!base_dir.empty() && fs::path(value).is_relative()) {
    fs::path relative = fs::path(base_dir) / value;
    if (fs::is_regular_file(relative, ec)) return DatasetRef{relative.string(), ""};
  }
  if (absl::StartsWith(value, "ds-")) return DatasetRef{"", value};
  return absl::NotFoundError(
      absl::StrCat(what, ": '", value,
                   "' is neither a local file nor a dataset id (ds-...): check the path, or run "
                   "`peftctl datasets list` for the ids"));
}

grpc::Status UploadDatasetFile(Cli& cli, const std::string& path, bool allow_bad_lines,
                               v1::Dataset* dataset) {
  std::error_code ec;
  const int64_t size = static_cast<int64_t>(fs::file_size(path, ec));
  auto sha = Sha256HexOfFile(path);
  std::ifstream in(path, std::ios::binary);
  if (ec || !sha.ok() || !in) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("cannot read '", path, "': check the path and permissions"));
  }
  auto context = cli.NewContext(/*stream=*/true);
  auto writer = cli.stub().UploadDataset(context.get(), dataset);

  v1::UploadDatasetRequest header;
  header.mutable_header()->set_filename(fs::path(path).filename().string());
  header.mutable_header()->set_size_bytes(size);
  header.mutable_header()->set_sha256(*sha);
  header.mutable_header()->set_allow_bad_lines(allow_bad_lines);
  bool open = writer->Write(header);

  const bool show_progress = cli.err_is_tty() && !cli.json() && size >= kUploadProgressMinBytes;
  const auto start = std::chrono::steady_clock::now();
  std::string buffer(kUploadChunkBytes, '\0');
  int64_t sent = 0;
  // A failed Write means the server closed the stream (e.g. it refused a line); Finish says why.
  while (open && in) {
    in.read(buffer.data(), kUploadChunkBytes);
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    v1::UploadDatasetRequest chunk;
    chunk.set_chunk(buffer.data(), static_cast<size_t>(n));
    open = writer->Write(chunk);
    sent += n;
    if (show_progress) {
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      cli.err() << "\r\x1b[2K"
                << RenderTransfer(header.header().filename(), sent, size, elapsed,
                                  cli.terminal_width());
      cli.err().flush();
    }
  }
  if (show_progress) cli.err() << "\r\x1b[2K";
  if (open) writer->WritesDone();
  return writer->Finish();
}

std::string DescribeDataset(const v1::Dataset& d) {
  std::string lines = std::to_string(d.lines());
  // Thousands separators: 1024 -> 1,024.
  for (int i = static_cast<int>(lines.size()) - 3; i > 0; i -= 3) lines.insert(i, ",");
  return absl::StrCat(
      d.filename().empty() ? "dataset" : d.filename(), " -> ", d.id(), " (", lines,
      d.lines() == 1 ? " line, " : " lines, ", d.format().empty() ? "" : d.format(),
      d.format().empty() ? "" : ", ", FormatBytes(d.size_bytes()),
      d.bad_lines() > 0
          ? absl::StrCat(", ", d.bad_lines(), d.bad_lines() == 1 ? " bad line" : " bad lines",
                         " for jobs with skip_bad_lines")
          : "",
      ")");
}

}  // namespace peftd::cli
