// `--local-workers N`: spawns N `peftd-worker` children that connect back to this server, one GPU
// each (round-robin) when GPUs exist, restarts a child that dies (exponential backoff, exit status
// logged), and stops them all on shutdown (SIGTERM, then SIGKILL after a grace period, reaped).
//
// Child command line:
//   <worker_binary> --server <server_address> --worker-id local-<i> [--token-file F]
//                   [--tls-ca CA [--tls-cert C --tls-key K]]
//                   [--model-root R] [--cache-dir <cache_dir>/local-<i>] <extra_args...>
// A TLS server's children dial it over TLS: --tls-ca is the server's own --tls-cert (right for a
// self-signed certificate) and, when the server requires client certificates, --tls-cert/--tls-key
// are the server's own pair. A --tls-* flag the operator put in extra_args (--worker-arg) replaces
// the one the supervisor would add, e.g. --worker-arg=--tls-ca=ca.pem for a CA-signed certificate.
// Their stdout goes to the server's stderr, with their logs: the server's stdout carries only its
// machine-readable "listening" line.
// A token given inline (--auth-token / PEFTD_AUTH_TOKEN) never goes on argv, which every user can
// read: Start() writes it to <cache_dir>/token (0600) and children get --token-file for it; with
// no cache_dir it goes in the child's environment as PEFTD_TOKEN (owner-readable only).
// Environment: CUDA_VISIBLE_DEVICES=<gpus[i % n]> when GPUs are
// known; "" (hides every GPU) with hide_gpus; untouched when no GPU is known, so an undetected
// device setup (containers) still reaches the worker as the parent saw it.
#ifndef PEFTD_SERVER_WORKER_SUPERVISOR_H_
#define PEFTD_SERVER_WORKER_SUPERVISOR_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/options.h"
#include "server/process_launcher.h"

namespace peftd::server {

struct WorkerSupervisorOptions {
  int num_workers = 1;
  std::string worker_binary;
  std::string server_address;  // what the children dial: the server's bound address
  std::vector<std::string> extra_args;
  std::vector<std::string> gpus;
  bool hide_gpus = false;
  // The workers' token (ServerOptions.worker_token), never the users'.
  std::string token_file;  // passed as --token-file
  std::string auth_token;  // when token_file is empty: <cache_dir>/token, else PEFTD_TOKEN
  std::string model_root;  // passed as --model-root when set
  std::string tls_ca;      // passed as --tls-ca when set (unless extra_args has it)
  std::string tls_cert;    // passed as --tls-cert / --tls-key when both set (ditto)
  std::string tls_key;
  std::string cache_dir;  // children get --cache-dir <cache_dir>/local-<i> when set

  // Told (outside the supervisor's lock) when a child ends on its own, with how: "(pid 12)
  // ended with signal 9 (Killed)". The server loses that worker's leases at once.
  std::function<void(const std::string& worker_id, const std::string& how)> on_exit;

  absl::Duration min_backoff = absl::Seconds(1);    // delay before the first restart
  absl::Duration max_backoff = absl::Seconds(60);   // cap of the doubling delay
  absl::Duration stable_after = absl::Seconds(60);  // a child that ran this long resets backoff
  absl::Duration stop_grace = absl::Seconds(10);    // SIGTERM -> SIGKILL
  absl::Duration poll_interval = absl::Milliseconds(100);
  // Run the monitor loop on a thread of its own (production). Tests of the fake launcher turn it
  // off and drive PollOnce() with a fake clock.
  bool monitor_thread = true;
  // How Stop() waits between checks; tests pass a FakeClock advance.
  std::function<void(absl::Duration)> sleep = [](absl::Duration d) { absl::SleepFor(d); };
};

// The supervisor options for `server_address` from the parsed server flags (cache_dir =
// <data_dir>/workers, stop_grace = --shutdown-grace; TLS as described at the top).
WorkerSupervisorOptions SupervisorOptionsFrom(const ServerOptions& options,
                                              const std::string& server_address);

class WorkerSupervisor {
 public:
  // What a child is doing, for logs, health and tests.
  struct ChildInfo {
    std::string worker_id;             // "local-<i>"
    pid_t pid = 0;                     // 0 while waiting to restart
    int starts = 0;                    // launches so far
    std::string last_exit;             // ExitStatus::ToString of the last death, "" if none
    std::string cuda_visible_devices;  // "<unset>" when untouched
    absl::Time next_start;             // when a dead child is launched again
  };

  // `launcher` null = the real one. `clock` null = the real clock. Not started yet.
  WorkerSupervisor(WorkerSupervisorOptions options, std::unique_ptr<ProcessLauncher> launcher,
                   Clock* clock = nullptr);
  ~WorkerSupervisor();  // Stop()
  WorkerSupervisor(const WorkerSupervisor&) = delete;
  WorkerSupervisor& operator=(const WorkerSupervisor&) = delete;

  // Checks the worker binary (FailedPrecondition naming --worker-binary when it is not an
  // executable file), writes the token file when needed, and launches the children (from the
  // monitor thread when there is one).
  absl::Status Start();
  // SIGTERM to every child, SIGKILL to those still alive after stop_grace, all reaped; no restart
  // afterwards. Idempotent, thread-safe.
  void Stop();
  // One pass of the monitor loop: reap dead children, schedule their restart, launch those due.
  void PollOnce();
  std::vector<ChildInfo> Children() const;

  // The child's command line and environment (exposed for tests and logs).
  LaunchSpec SpecFor(int index) const;
  // The --token-file children get ("" = none): token_file, or the one Start() writes.
  std::string ChildTokenFile() const;

 private:
  struct Child;
  void MonitorLoop();
  void LaunchLocked(Child& child);  // requires mu_
  absl::Status WriteTokenFile() const;

  const WorkerSupervisorOptions options_;
  std::unique_ptr<ProcessLauncher> launcher_;
  Clock* clock_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::unique_ptr<Child>> children_;  // guarded by mu_
  bool started_ = false;                          // guarded by mu_
  bool stopping_ = false;                         // guarded by mu_
  std::thread monitor_;
};

// The address local children dial for a server bound to `listen` on `bound_port`: wildcard hosts
// (0.0.0.0, [::], empty) become loopback (127.0.0.1, [::1]); "unix:" addresses are kept as they
// are.
std::string LocalDialAddress(const std::string& listen, int bound_port);

// The delay before restart number `consecutive_failures` (1-based): min * 2^(n-1), capped.
absl::Duration RestartBackoff(int consecutive_failures, absl::Duration min, absl::Duration max);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_WORKER_SUPERVISOR_H_
