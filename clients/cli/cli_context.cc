#include "clients/cli/cli_context.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/rpc_error_details.h"
#include "common/grpc_channel.h"
#include "common/status.h"

namespace peftd::cli {

namespace {

// peftd's auth refusals end with how every kind of client passes a token (peftctl, workers, raw
// gRPC metadata): peftctl prints its own advice instead, so the server's is cut off.
std::string WithoutServerHowTo(const std::string& message) {
  for (absl::string_view marker : {": pass the server's token", "; workers take"}) {
    const size_t at = absl::string_view(message).find(marker);
    if (at != std::string::npos) return message.substr(0, at);
  }
  return message;
}

}  // namespace

Cli::Cli(std::ostream& out, std::ostream& err, bool out_is_tty, bool err_is_tty, int terminal_width)
    : out_(out),
      err_(err),
      out_is_tty_(out_is_tty),
      err_is_tty_(err_is_tty),
      terminal_width_(terminal_width) {}

absl::Status CheckServerAddress(absl::string_view address) {
  // gRPC target schemes pass as they are; they are rare on a command line and gRPC checks them.
  for (absl::string_view scheme : {"unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(address, scheme)) return absl::OkStatus();
  }
  const size_t colon = address.rfind(':');
  int port = 0;
  const bool ok = colon != absl::string_view::npos && colon > 0 &&
                  absl::SimpleAtoi(address.substr(colon + 1), &port) && port > 0 && port < 65536 &&
                  address.find_first_of(" /") == absl::string_view::npos;
  if (ok) return absl::OkStatus();
  return UsageError(absl::StrCat("--server: '", address,
                                 "' is not HOST:PORT (e.g. 127.0.0.1:50051 or "
                                 "peftd.example.com:50051; also PEFTD_SERVER)"));
}

absl::Status Cli::Connect() {
  RETURN_IF_ERROR(CheckServerAddress(options_.server));
  if (options_.token.empty() && !options_.token_file.empty()) {
    std::ifstream in(options_.token_file);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("--token-file: cannot read '", options_.token_file,
                                              "': check the path and permissions"));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    options_.token = std::string(absl::StripAsciiWhitespace(ss.str()));
    if (options_.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-file: '", options_.token_file, "' is empty"));
    }
  }
  if (options_.token.empty()) {
    if (const char* env = std::getenv("PEFTD_TOKEN")) options_.token = env;
  }
  ChannelOptions channel_options;
  channel_options.address = options_.server;
  channel_options.token = options_.token;
  channel_options.tls_ca_file = options_.tls_ca;
  channel_options.tls_cert_file = options_.tls_cert;
  channel_options.tls_key_file = options_.tls_key;
  channel_options.tls_server_name = options_.tls_server_name;
  auto channel = MakeChannelOrError(channel_options);
  if (!channel.ok()) {
    // A missing file stays NotFound (3); the rest is a wrong combination of --tls-* flags (2).
    if (absl::IsNotFound(channel.status())) return channel.status();
    return UsageError(channel.status().message());
  }
  channel_ = *std::move(channel);
  tls_ = UsesTls(channel_options);
  stub_ = v1::JobService::NewStub(channel_);
  return absl::OkStatus();
}

std::unique_ptr<grpc::ClientContext> Cli::NewContext(bool stream) const {
  auto context = std::make_unique<grpc::ClientContext>();
  AddAuth(context.get(), options_.token);
  if (!stream || options_.timeout_given) {
    auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.timeout_seconds * 1000));
    context->set_deadline(std::chrono::system_clock::now() + timeout);
  }
  return context;
}

int Cli::Fail(const grpc::Status& status, absl::string_view doing) {
  const std::string& server = options_.server;
  std::string message = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      err_ << "error: cannot reach peftd at " << server << " while " << doing
           << ": is the server running? (--server / PEFTD_SERVER)";
      if (!message.empty()) err_ << "\n  (" << message << ")";
      if (tls_) {
        err_ << "\n  with TLS, also check --tls-ca (the CA of the server's certificate), "
                "--tls-cert/--tls-key (servers that require a client certificate) and "
                "--tls-server-name (when the certificate names another host)";
      } else if (absl::StrContains(message, "Socket closed") ||
                 absl::StrContains(absl::AsciiStrToLower(message), "handshake")) {
        err_ << "\n  if the server uses TLS, pass --tls-ca";
      }
      err_ << "\n";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      err_ << "error: peftd at " << server << " did not answer within " << options_.timeout_seconds
           << "s while " << doing << ": the server may be overloaded; retry or raise --timeout\n";
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      err_ << "error: peftd refused the request while " << doing << ": "
           << WithoutServerHowTo(message) << "\n  "
           << (options_.token.empty() ? "this server needs a token: pass it with --token, "
                                        "--token-file or PEFTD_TOKEN"
                                      : "check the token given with --token, --token-file or "
                                        "PEFTD_TOKEN")
           << "\n";
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      err_ << "error: permission denied while " << doing << ": " << message << "\n";
      break;
    default: {
      // peftd lists the bad lines in the message too ("train.jsonl: 2 bad lines: line 3: ...;
      // line 7: ..."): keep its head, then one violation a line.
      const std::vector<FieldViolation> violations = FieldViolations(status);
      std::string headline = message;
      if (!violations.empty() && !violations[0].description.empty()) {
        size_t at = message.find(violations[0].description);
        if (at != std::string::npos && at > 0) {
          std::string head(absl::StripTrailingAsciiWhitespace(message.substr(0, at)));
          while (!head.empty() && (head.back() == ':' || head.back() == ';')) head.pop_back();
          // "lora.r: must be >= 1" with the violation {lora.r, must be >= 1} stays whole.
          if (head != violations[0].field) headline = head;
        }
      }
      err_ << "error: " << doing << ": " << headline << "\n";
      for (const FieldViolation& v : violations) {
        // A description that already names its field or line stands alone.
        const bool named = v.field.empty() || absl::StartsWith(v.description, v.field) ||
                           absl::StartsWith(v.description, "line ");
        std::string line = named ? v.description : v.field + ": " + v.description;
        if (line != headline) err_ << "  " << line << "\n";
      }
      break;
    }
  }
  return ExitCodeFor(status.error_code());
}

int Cli::Fail(const absl::Status& status) {
  err_ << "error: " << status.message() << "\n";
  return ExitCodeFor(status);
}

std::string Cli::ToJson(const google::protobuf::Message& message, bool one_line) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = !one_line;
  std::string json;
  // Printing a message we hold cannot fail (no Any with unknown types in our API).
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

void Cli::PrintJson(const google::protobuf::Message& message, bool one_line) {
  out_ << ToJson(message, one_line) << "\n";
  out_.flush();
}

}  // namespace peftd::cli
