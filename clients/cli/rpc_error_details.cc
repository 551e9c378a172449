#include "clients/cli/rpc_error_details.h"

#include <google/protobuf/unknown_field_set.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3;
// }
constexpr int kStatusDetails = 3;
// google.protobuf.Any { string type_url = 1; bytes value = 2; }
constexpr int kAnyTypeUrl = 1;
constexpr int kAnyValue = 2;
// google.rpc.BadRequest { repeated FieldViolation field_violations = 1; }
// FieldViolation { string field = 1; string description = 2; }
constexpr int kBadRequestViolations = 1;
constexpr int kViolationField = 1;
constexpr int kViolationDescription = 2;

// The length-delimited fields numbered `number`, in order.
std::vector<std::string> Strings(const UnknownFieldSet& set, int number) {
  std::vector<std::string> out;
  for (int i = 0; i < set.field_count(); ++i) {
    const UnknownField& f = set.field(i);
    if (f.number() == number && f.type() == UnknownField::TYPE_LENGTH_DELIMITED) {
      out.push_back(f.length_delimited());
    }
  }
  return out;
}

std::string First(const UnknownFieldSet& set, int number) {
  auto all = Strings(set, number);
  return all.empty() ? "" : all.front();
}

void AppendBadRequest(const std::string& bytes, std::vector<FieldViolation>* out) {
  UnknownFieldSet bad_request;
  if (!bad_request.ParseFromString(bytes)) return;
  for (const std::string& v : Strings(bad_request, kBadRequestViolations)) {
    UnknownFieldSet violation;
    if (!violation.ParseFromString(v)) continue;
    out->push_back({First(violation, kViolationField), First(violation, kViolationDescription)});
  }
}

void AppendLineError(const std::string& bytes, std::vector<FieldViolation>* out) {
  v1::DatasetLineError e;
  if (!e.ParseFromString(bytes)) return;
  std::string where = absl::StrCat("line ", e.line());
  if (!e.field().empty()) absl::StrAppend(&where, ": ", e.field());
  out->push_back({where, e.reason()});
}

}  // namespace

std::vector<FieldViolation> FieldViolations(const grpc::Status& status) {
  std::vector<FieldViolation> out;
  if (status.error_details().empty()) return out;
  UnknownFieldSet rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return out;
  for (const std::string& any_bytes : Strings(rpc_status, kStatusDetails)) {
    UnknownFieldSet any;
    if (!any.ParseFromString(any_bytes)) continue;
    const std::string type_url = First(any, kAnyTypeUrl);
    const std::string value = First(any, kAnyValue);
    if (absl::EndsWith(type_url, "/google.rpc.BadRequest")) {
      AppendBadRequest(value, &out);
    } else if (absl::EndsWith(type_url, "/peftd.v1.DatasetLineError")) {
      AppendLineError(value, &out);
    }
  }
  return out;
}

}  // namespace peftd::cli
