// Uploading a local JSONL file with UploadDataset (client stream: a header with size and sha256,
// then 1 MiB chunks), shared by `submit` and `datasets upload`.
#ifndef PEFTD_CLIENTS_CLI_DATASET_UPLOAD_H_
#define PEFTD_CLIENTS_CLI_DATASET_UPLOAD_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clients/cli/cli_context.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {

constexpr int64_t kUploadChunkBytes = 1 << 20;
// Files at least this big get a progress bar on a TTY.
constexpr int64_t kUploadProgressMinBytes = 4 << 20;

// A dataset named by a flag or a job file: a local file to upload, or the id of one on the server.
struct DatasetRef {
  std::string path;  // set for a local file
  std::string id;    // set for a server dataset ("ds-...")
};

// A value that names an existing file (as given, or relative to `base_dir` when not empty) is a
// file; else a value starting with "ds-" is an id; else a NotFound naming `what`.
absl::StatusOr<DatasetRef> ResolveDatasetRef(const std::string& value, const std::string& base_dir,
                                             absl::string_view what);

// Uploads `path`; with `allow_bad_lines` the server stores a file with bad lines (counted in
// Dataset.bad_lines) for jobs with skip_bad_lines. On failure returns the server's status, whose
// details may name every bad line; a local read error comes back as NOT_FOUND naming the file.
grpc::Status UploadDatasetFile(Cli& cli, const std::string& path, bool allow_bad_lines,
                               v1::Dataset* dataset);

// One line for humans: "train.jsonl -> ds-0123456789abcdef (1,024 lines, prompt_completion, 2.1
// MiB)".
std::string DescribeDataset(const v1::Dataset& dataset);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_DATASET_UPLOAD_H_
