// Checks an uploaded dataset while its bytes stream in (UploadDataset): JSONL, one record a line,
// every record of one format (DESIGN.md "Worker internals", Data). Every bad line is named, none
// skipped. Until common/dataset_records.h (branch `data`) lands this holds a minimal local
// validator; then it delegates to that one and keeps only the streaming and the limits.
#ifndef PEFTD_SERVER_DATASET_UPLOAD_H_
#define PEFTD_SERVER_DATASET_UPLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "peftd/v1/job.pb.h"

namespace peftd::server {

class DatasetUploadValidator {
 public:
  // Lines longer than this are refused (a JSONL file without newlines is not a dataset).
  static constexpr size_t kMaxLineBytes = 16 << 20;
  // Errors kept in detail; more are counted.
  static constexpr size_t kMaxErrors = 1000;

  void Feed(absl::string_view bytes);
  // Call once, after the last Feed.
  void Finish();

  int64_t lines() const { return line_no_; }
  int64_t records() const { return records_; }
  const std::string& format() const { return format_; }  // text, prompt_completion, ...
  const std::vector<v1::DatasetLineError>& errors() const { return errors_; }
  int64_t error_count() const { return error_count_; }

  // OK, or InvalidArgument naming the first bad lines in its message and every one (up to
  // kMaxErrors) as google.rpc.BadRequest field violations in its payload.
  absl::Status ToStatus(const std::string& filename) const;

 private:
  void Line(absl::string_view line);
  void Error(const std::string& field, const std::string& reason);

  std::string partial_;
  int64_t line_no_ = 0;
  int64_t records_ = 0;
  std::string format_;
  int64_t format_line_ = 0;
  std::vector<v1::DatasetLineError> errors_;
  int64_t error_count_ = 0;
  bool overlong_ = false;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_DATASET_UPLOAD_H_
