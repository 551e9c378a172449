// Client side of a gRPC connection to peftd: the channel (insecure or TLS) and the bearer token.
// Shared by peftctl and the worker so both connect and authenticate the same way.
#ifndef PEFTD_COMMON_GRPC_CHANNEL_H_
#define PEFTD_COMMON_GRPC_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace peftd {

struct ChannelOptions {
  std::string address;        // host:port, e.g. 127.0.0.1:50051.
  std::string token;          // Bearer token; empty = none. Sent by AddAuth, not by the channel.
  std::string tls_ca_file;    // PEM roots; setting any tls_* field turns TLS on.
  std::string tls_cert_file;  // Client certificate (mutual TLS), with tls_key_file.
  std::string tls_key_file;
  std::string tls_server_name;  // Overrides the name checked against the server certificate.
};

// True when any TLS field is set.
bool UsesTls(const ChannelOptions& options);

// An insecure channel, or a TLS one when any tls_* field is set. The channel connects lazily, so an
// unreachable server shows up as UNAVAILABLE on the first call. Never null; a TLS file that cannot
// be read gives a channel whose calls fail, so prefer MakeChannelOrError where the caller can
// report the file.
std::shared_ptr<grpc::Channel> MakeChannel(const ChannelOptions& options);

// As MakeChannel, but a TLS file that cannot be read (or a cert without its key) is an
// InvalidArgument naming the file and the option.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannelOrError(const ChannelOptions& options);
// As above, starting from the caller's channel arguments (e.g. the worker's reconnect backoff);
// the TLS name override and the message size limits are added to them.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannelOrError(const ChannelOptions& options,
                                                                  grpc::ChannelArguments args);

// Adds "authorization: Bearer <token>" metadata to `context` when `token` is not empty. Metadata,
// not call credentials: gRPC C++ refuses call credentials on insecure channels.
void AddAuth(grpc::ClientContext* context, const std::string& token);

// Initial metadata of a CreateJob reply that returns the job an earlier request with the same
// request_id made (value "true"): the reply is that Job either way.
inline constexpr char kExistingJobMetadata[] = "peftd-existing-job";

}  // namespace peftd

#endif  // PEFTD_COMMON_GRPC_CHANNEL_H_
