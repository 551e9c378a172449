// Every `peftd` flag, its default and its validation, in one place (the command_line_parser
// pattern of Triton). main() parses once and hands the resolved ServerOptions to the pieces that
// need them; nothing else reads argv or the environment.
//
// Environment fallbacks (used when the flag is absent; a flag always wins): PEFTD_LISTEN,
// PEFTD_METRICS_LISTEN, PEFTD_DATA_DIR, PEFTD_MODEL_ROOT, PEFTD_LOCAL_WORKERS, PEFTD_WORKER_BINARY,
// PEFTD_GPUS, PEFTD_AUTH_TOKEN, PEFTD_AUTH_TOKEN_FILE, PEFTD_TLS_CERT, PEFTD_TLS_KEY,
// PEFTD_TLS_CLIENT_CA, PEFTD_EXAMPLES_DIR, PEFTD_LOG_LEVEL.
#ifndef PEFTD_SERVER_OPTIONS_H_
#define PEFTD_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace peftd::server {

struct ServerOptions {
  // --- network ---
  std::string listen = "127.0.0.1:50051";         // gRPC (JobService, WorkerService, health)
  std::string metrics_listen = "127.0.0.1:9464";  // Prometheus /metrics; "" = no endpoint
  std::string port_file;  // main writes "grpc=HOST:PORT metrics=HOST:PORT\n" there once serving

  // --- storage and models ---
  std::string data_dir = "./peftd-data";  // SQLite database and blobs
  std::string model_root;                 // resolved: <data_dir>/models when not given
  std::string examples_dir;               // resolved: the first of <exe>/../share/peftd/examples,
                                          // <exe>/../../examples, ./examples that exists; "" = none

  // --- local workers ---
  int local_workers = 1;                 // peftd-worker children to spawn and supervise
  std::string worker_binary;             // resolved: DefaultWorkerBinary(ExecutableDir())
  std::vector<std::string> worker_args;  // appended to every child's command line
  // Resolved GPU list, one entry per device handed out round-robin as CUDA_VISIBLE_DEVICES
  // ("0", "1" or UUIDs). From --gpus, else detected (server/gpu_detect.h); empty = none.
  std::vector<std::string> gpus;
  bool hide_gpus = false;  // --gpus none: children get CUDA_VISIBLE_DEVICES="" (CPU only)

  // --- security ---
  // Users' token: JobService and reflection. Health is open (load balancers probe it).
  std::string auth_token;       // resolved: the content of auth_token_file when that is set
  std::string auth_token_file;  // wins over auth_token; refused when readable by others
  // Workers' token: WorkerService only, so a user's token cannot take leases or complete jobs.
  // Resolved: the content of worker_token_file; when neither is given but auth_token is, a random
  // token that only the local workers receive (remote workers then need --worker-token-file).
  std::string worker_token;
  std::string worker_token_file;
  bool worker_token_generated = false;  // worker_token was made up at start
  // Listening beyond loopback without a user token is refused unless this is set; a warning is
  // logged at every start either way (InsecureListenWarning).
  bool insecure = false;
  std::string tls_cert;       // PEM server certificate chain; TLS on when set
  std::string tls_key;        // PEM private key of tls_cert (required with it)
  std::string tls_client_ca;  // PEM CA bundle; when set, clients must present a cert it signed

  // --- scheduling ---
  absl::Duration heartbeat_interval = absl::Seconds(2);  // told to workers at Register
  absl::Duration lease_timeout = absl::Seconds(6);       // no heartbeat this long: lease lost
  absl::Duration restart_grace = absl::Seconds(30);      // after a restart, for workers to re-claim
  // A gang whose ranks have not all met this long after rank 0 opened its rendezvous loses the
  // attempt (requeued); also the workers' bound on every collective.
  absl::Duration rendezvous_timeout = absl::Seconds(120);
  absl::Duration shutdown_grace = absl::Seconds(10);  // SIGTERM -> SIGKILL of workers, RPC drain

  // --- blob sweep ---
  // How often unreferenced blobs (old checkpoints, discarded uploads) are deleted, and how old an
  // unreferenced blob must be to go (an upload's blob exists moments before its record).
  absl::Duration blob_sweep_interval = absl::Minutes(10);
  absl::Duration blob_sweep_grace = absl::Hours(1);

  // --- limits ---
  int64_t max_dataset_bytes = int64_t{1} << 30;   // one uploaded dataset
  int64_t max_message_bytes = int64_t{16} << 20;  // one gRPC message (both directions)
  int max_sweep_children = 64;                    // children of one sweep

  // --- logging ---
  std::string log_level = "info";  // trace, debug, info, warn, error, critical, off

  // Set instead of running when --help or --version was given: print it to stdout, exit 0.
  std::string exit_message;
};

// Parses argv (and the environment fallbacks above), fills the derived defaults, reads the token
// file and validates. InvalidArgument / FailedPrecondition with a message naming the flag.
absl::StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv);

// "1GiB", "16MiB", "512KiB", "1G", "1000000" -> bytes. InvalidArgument for anything else.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

// The token in `path`, surrounding whitespace removed. FailedPrecondition naming `flag` when the
// file is readable or writable by everyone (mode & 006: "chmod 600 ..."), missing, or empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path,
                                          absl::string_view flag = "--auth-token-file");

// Whether `listen` only accepts connections from this machine (127.0.0.0/8, [::1], localhost,
// unix: sockets).
bool IsLoopbackAddress(const std::string& listen);

// What to log at every start of a server that `options` leave open to the network: "" when
// nothing is; otherwise what is missing (no user token: anyone who reaches the port can submit
// jobs; no TLS: tokens and data travel in clear text).
std::string InsecureListenWarning(const ServerOptions& options);

// Directory of the running executable (/proc/self/exe), "" when unknown.
std::string ExecutableDir();

// The worker binary for a peftd in `exe_dir`: the first executable of <exe_dir>/peftd-worker
// (installed side by side) and <exe_dir>/../worker/peftd-worker (the build tree), else
// <exe_dir>/peftd-worker; "peftd-worker" when exe_dir is empty.
std::string DefaultWorkerBinary(const std::string& exe_dir);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_OPTIONS_H_
