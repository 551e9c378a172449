#include "server/field_violation.h"

#include "absl/strings/cord.h"
#include "google/rpc/error_details.pb.h"

namespace peftd::server {

absl::Status WithFieldViolation(absl::Status st, const std::string& field,
                                const std::string& given_description) {
  if (st.ok() || st.GetPayload(kBadRequestTypeUrl).has_value()) return st;
  const absl::string_view msg = st.message();
  std::string name = field;
  std::string description = given_description.empty() ? std::string(msg) : given_description;
  if (name.empty()) {
    const size_t colon = msg.find(": ");
    if (colon == absl::string_view::npos || colon == 0 ||
        msg.substr(0, colon).find(' ') != absl::string_view::npos) {
      return st;
    }
    name = std::string(msg.substr(0, colon));
    description = std::string(msg.substr(colon + 2));
  }
  google::rpc::BadRequest details;
  auto* v = details.add_field_violations();
  v->set_field(name);
  v->set_description(description);
  st.SetPayload(kBadRequestTypeUrl, absl::Cord(details.SerializeAsString()));
  return st;
}

}  // namespace peftd::server
