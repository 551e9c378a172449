#include "clients/cli/rpc_error_details.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {

std::vector<FieldViolation> FieldViolations(const grpc::Status& status) {
  std::vector<FieldViolation> out;
  google::rpc::Status rich;
  if (status.error_details().empty() || !rich.ParseFromString(status.error_details())) return out;
  for (const auto& any : rich.details()) {
    if (absl::EndsWith(any.type_url(), "/google.rpc.BadRequest")) {
      google::rpc::BadRequest bad_request;
      if (!bad_request.ParseFromString(any.value())) continue;
      for (const auto& v : bad_request.field_violations()) {
        out.push_back({v.field(), v.description()});
      }
    } else if (absl::EndsWith(any.type_url(), "/peftd.v1.DatasetLineError")) {
      v1::DatasetLineError e;
      if (!e.ParseFromString(any.value())) continue;
      std::string where = absl::StrCat("line ", e.line());
      if (!e.field().empty()) absl::StrAppend(&where, ": ", e.field());
      out.push_back({where, e.reason()});
    }
  }
  return out;
}

}  // namespace peftd::cli
