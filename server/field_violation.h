// Refusals that name a request field carry it as a google.rpc.BadRequest field violation in the
// status payload (ToGrpcStatus turns payloads into gRPC error details), so that clients can point
// at the field without parsing the message.
#ifndef PEFTD_SERVER_FIELD_VIOLATION_H_
#define PEFTD_SERVER_FIELD_VIOLATION_H_

#include <string>

#include "absl/status/status.h"

namespace peftd::server {

inline constexpr char kBadRequestTypeUrl[] = "type.googleapis.com/google.rpc.BadRequest";

// `st` with a BadRequest naming `field`, described by `description` (default: the message). With
// `field` empty, the field is the message's prefix before ": " when that prefix is one word
// ("lora.r: must be >= 1"). OK statuses, statuses that already carry a BadRequest, and messages
// without a field come back unchanged.
absl::Status WithFieldViolation(absl::Status st, const std::string& field = "",
                                const std::string& description = "");

}  // namespace peftd::server

#endif  // PEFTD_SERVER_FIELD_VIOLATION_H_
