#include "common/status_payload.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace peftd {
namespace {

constexpr char kLineUrl[] = "type.peftd.dev/line";
constexpr char kFieldUrl[] = "type.peftd.dev/field";

}  // namespace

absl::Status WithLine(absl::Status status, int64_t line) {
  if (!status.ok() && line > 0) status.SetPayload(kLineUrl, absl::Cord(absl::StrCat(line)));
  return status;
}

absl::Status WithField(absl::Status status, absl::string_view field) {
  if (!status.ok() && !field.empty()) status.SetPayload(kFieldUrl, absl::Cord(field));
  return status;
}

int64_t LineOf(const absl::Status& status) {
  auto payload = status.GetPayload(kLineUrl);
  int64_t line = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &line)) return 0;
  return line;
}

std::string FieldOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFieldUrl);
  return payload.has_value() ? std::string(*payload) : "";
}

}  // namespace peftd
