#include "server/dataset_upload.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"

namespace peftd::server {
namespace {

constexpr char kBadRequestUrl[] = "type.googleapis.com/google.rpc.BadRequest";

data::RecordOptions UploadOptions() {
  data::RecordOptions o;
  o.max_errors = DatasetUploadValidator::kMaxErrors;
  o.max_total_bytes = 0;  // the service enforces --max-dataset-bytes itself, with its own message
  return o;
}

}  // namespace

DatasetUploadValidator::DatasetUploadValidator() : validator_(UploadOptions()) {}

void DatasetUploadValidator::Feed(absl::string_view bytes) {
  // Without max_total_bytes, Feed only fails after Finish, which the service never does.
  (void)validator_.Feed(std::string_view(bytes.data(), bytes.size()));
}

void DatasetUploadValidator::Finish() { result_ = validator_.Finish(); }

absl::Status DatasetUploadValidator::ToStatus(const std::string& filename,
                                              bool allow_bad_lines) const {
  if (result_.ok()) return absl::OkStatus();
  if (allow_bad_lines && result_.records > 0) return absl::OkStatus();
  const std::string name = filename.empty() ? "dataset" : filename;
  absl::Status st = absl::InvalidArgumentError(
      absl::StrCat(data::DescribeErrors(name, result_), "; fix the file and upload it again"));
  google::rpc::BadRequest details;
  for (const data::LineError& e : result_.errors) {
    auto* v = details.add_field_violations();
    v->set_field(e.field.empty() ? absl::StrCat("line ", e.line)
                                 : absl::StrCat("line ", e.line, ": ", e.field));
    v->set_description(data::FormatLineError(e));
  }
  if (details.field_violations_size() > 0) {
    st.SetPayload(kBadRequestUrl, absl::Cord(details.SerializeAsString()));
  }
  return st;
}

}  // namespace peftd::server
