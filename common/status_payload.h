// What an error is about, carried on an absl::Status from where it is known (the dataset loader
// knows the line) to where a JobError is filled (the worker's report): the 1-based dataset line
// and the spec field, as JobError.line and JobError.field. Annotate() keeps them.
#ifndef PEFTD_COMMON_STATUS_PAYLOAD_H_
#define PEFTD_COMMON_STATUS_PAYLOAD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace peftd {

// `status` with its offending line / field set (no-op on OK).
absl::Status WithLine(absl::Status status, int64_t line);
absl::Status WithField(absl::Status status, absl::string_view field);

// 0 / "" when the status carries none.
int64_t LineOf(const absl::Status& status);
std::string FieldOf(const absl::Status& status);

}  // namespace peftd

#endif  // PEFTD_COMMON_STATUS_PAYLOAD_H_
