// The rich error details a gRPC status may carry (grpc-status-details-bin, a google.rpc.Status):
// the field violations of a google.rpc.BadRequest and peftd.v1.DatasetLineError entries, which
// is how the server names every bad line of a dataset or every bad field of a spec.
#ifndef PEFTD_CLIENTS_CLI_RPC_ERROR_DETAILS_H_
#define PEFTD_CLIENTS_CLI_RPC_ERROR_DETAILS_H_

#include <grpcpp/support/status.h>

#include <string>
#include <vector>

namespace peftd::cli {

struct FieldViolation {
  std::string field;  // e.g. "line 4: messages[1].role" or "method_params.lora.r"; may be empty.
  std::string description;  // What is wrong and, ideally, what to do.
};

// The violations in `status`'s details, in order. Empty when there are no details or they cannot
// be decoded.
std::vector<FieldViolation> FieldViolations(const grpc::Status& status);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_RPC_ERROR_DETAILS_H_
