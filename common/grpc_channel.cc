#include "common/grpc_channel.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace peftd {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(option, ": cannot read '", path, "': check the path and its permissions"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const ChannelOptions& options) {
  if (!UsesTls(options)) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key: a client certificate needs its key (give both or neither)");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    auto ca = ReadPem(options.tls_ca_file, "--tls-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.tls_cert_file.empty()) {
    auto cert = ReadPem(options.tls_cert_file, "--tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(options.tls_key_file, "--tls-key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments Arguments(const ChannelOptions& options, grpc::ChannelArguments args = {}) {
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  // Adapters and merged models stream in 1 MiB chunks; leave room for framing.
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  return args;
}

}  // namespace

bool UsesTls(const ChannelOptions& options) {
  return !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
         !options.tls_key_file.empty() || !options.tls_server_name.empty();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannelOrError(const ChannelOptions& options) {
  return MakeChannelOrError(options, grpc::ChannelArguments());
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannelOrError(const ChannelOptions& options,
                                                                  grpc::ChannelArguments args) {
  auto creds = Credentials(options);
  if (!creds.ok()) return creds.status();
  return grpc::CreateCustomChannel(options.address, *creds, Arguments(options, std::move(args)));
}

std::shared_ptr<grpc::Channel> MakeChannel(const ChannelOptions& options) {
  auto channel = MakeChannelOrError(options);
  if (channel.ok()) return *std::move(channel);
  // Unreadable TLS files: a TLS channel with default roots fails its handshake rather than
  // silently falling back to plaintext.
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials({}), Arguments(options));
}

void AddAuth(grpc::ClientContext* context, const std::string& token) {
  if (token.empty()) return;
  context->AddMetadata("authorization", "Bearer " + token);
}

}  // namespace peftd
