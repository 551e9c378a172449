// Checks an uploaded dataset while its bytes stream in (UploadDataset) with the record validator
// the worker also uses (common/dataset_records.h), and turns its verdict into the API's error:
// INVALID_ARGUMENT naming the first bad lines in the message and every kept one as a
// google.rpc.BadRequest field violation in the status details.
#ifndef PEFTD_SERVER_DATASET_UPLOAD_H_
#define PEFTD_SERVER_DATASET_UPLOAD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/dataset_records.h"

namespace peftd::server {

class DatasetUploadValidator {
 public:
  // Bad lines kept in detail (all are counted).
  static constexpr int64_t kMaxErrors = 1000;

  DatasetUploadValidator();
  void Feed(absl::string_view bytes);
  // Call once, after the last Feed.
  void Finish();

  const data::ValidationResult& result() const { return result_; }
  int64_t lines() const { return result_.lines; }
  std::string format() const { return data::FormatName(result_.format); }

  // OK when the file has records and no bad line (or, with `allow_bad_lines`, when it has at
  // least one record: the bad lines are then only counted); InvalidArgument otherwise.
  absl::Status ToStatus(const std::string& filename, bool allow_bad_lines = false) const;
  int64_t bad_lines() const { return result_.bad_lines; }

 private:
  data::RecordValidator validator_;
  data::ValidationResult result_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_DATASET_UPLOAD_H_
