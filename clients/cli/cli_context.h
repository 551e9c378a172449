// What every peftctl command shares: the global flags, the output streams, the connection to
// peftd and the way errors are reported. One Cli lives for one RunPeftctl call.
#ifndef PEFTD_CLIENTS_CLI_CLI_CONTEXT_H_
#define PEFTD_CLIENTS_CLI_CLI_CONTEXT_H_

#include <grpcpp/grpcpp.h>

#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "peftd/v1/jobs.grpc.pb.h"

namespace peftd::cli {

// The global flags; defaults are the ones documented in `peftctl --help`.
struct GlobalOptions {
  std::string server = "127.0.0.1:50051";  // --server, PEFTD_SERVER
  std::string token;                       // --token, else --token-file, else PEFTD_TOKEN
  std::string token_file;
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  bool json = false;            // --json: machine output on stdout
  double timeout_seconds = 30;  // --timeout: deadline of each unary call
  bool timeout_given = false;   // streams get a deadline only when --timeout is given
};

// "HOST:PORT" (or a gRPC target scheme such as unix:PATH); a UsageError naming --server
// otherwise, so that a typo is not reported as an unreachable server.
absl::Status CheckServerAddress(absl::string_view address);

class Cli {
 public:
  // `out_is_tty` / `err_is_tty` enable live progress redraws on that stream.
  Cli(std::ostream& out, std::ostream& err, bool out_is_tty, bool err_is_tty, int terminal_width);

  GlobalOptions& options() { return options_; }
  const GlobalOptions& options() const { return options_; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }
  bool json() const { return options_.json; }
  bool out_is_tty() const { return out_is_tty_; }
  bool err_is_tty() const { return err_is_tty_; }
  int terminal_width() const { return terminal_width_; }

  // Reads the token (flag, file, environment) and builds the channel. Called once before the
  // first RPC; a malformed --server is a UsageError, an unreadable token or TLS file a NotFound
  // naming the flag.
  absl::Status Connect();
  v1::JobService::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // A context with the bearer token and, for unary calls (or when --timeout is given), the
  // deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(bool stream = false) const;

  // Prints what went wrong while `doing` (e.g. "getting job j-1") and what to do about it, every
  // field violation of the details included, to stderr. Returns the exit code for the status.
  int Fail(const grpc::Status& status, absl::string_view doing);
  // Local failures (bad job file, unreadable dataset): the message as is.
  int Fail(const absl::Status& status);

  // `message` as protobuf JSON (proto field names, every primitive field, stable keys) on stdout:
  // indented, or on one line when `one_line` (streams print one document per line).
  void PrintJson(const google::protobuf::Message& message, bool one_line = false);
  static std::string ToJson(const google::protobuf::Message& message, bool one_line);

 private:
  GlobalOptions options_;
  std::ostream& out_;
  std::ostream& err_;
  bool out_is_tty_;
  bool err_is_tty_;
  int terminal_width_;
  bool tls_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_CLI_CONTEXT_H_
