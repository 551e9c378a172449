// STUB until branch `svc` lands (its version replaces this file): every flag of peftd and its
// default in one place.
#ifndef PEFTD_SERVER_OPTIONS_H_
#define PEFTD_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace peftd::server {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::string data_dir = "./peftd-data";
  std::string model_root;  // default <data_dir>/models
  int local_workers = 1;
  std::string worker_binary;  // default: peftd-worker next to peftd
  std::string auth_token;
  std::string auth_token_file;
  std::string tls_cert, tls_key, tls_client_ca;
  absl::Duration heartbeat_interval = absl::Seconds(2);
  absl::Duration lease_timeout = absl::Seconds(6);
  absl::Duration restart_grace = absl::Seconds(30);
  int64_t max_dataset_bytes = int64_t{1} << 30;
  int64_t max_upload_bytes = int64_t{16} << 30;  // checkpoints and adapters
  int max_message_bytes = 16 << 20;
  std::string port_file;
};

absl::StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_OPTIONS_H_
