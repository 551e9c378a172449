// `peftd-worker --server ADDR`: pulls work from the scheduler. Registers (advertising its memory),
// heartbeats every ~2 s with the progress of its running jobs, takes the leases the reply carries,
// fetches datasets (cached by sha256) and the checkpoint to resume from, runs the job, uploads
// checkpoints and the adapter (worker/blob_transfer.h), reports the end. Obeys cancellations
// within one training step; when the server goes away it reconnects with backoff and re-registers
// with the jobs it still runs, so the server can give it back their leases. A lease for a job it
// holds under an older attempt (the server gave up on that attempt) replaces it.
#ifndef PEFTD_WORKER_LEASE_LOOP_H_
#define PEFTD_WORKER_LEASE_LOOP_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "common/grpc_channel.h"
#include "peftd/v1/worker.grpc.pb.h"
#include "worker/blob_transfer.h"
#include "worker/job_runner.h"

namespace peftd::worker {

struct LeaseLoopOptions {
  std::string server = "127.0.0.1:50051";
  std::string auth_token;  // sent as "authorization: Bearer <token>" when set
  // TLS as peftctl's --tls-* flags (common/grpc_channel.h): any of them turns TLS on.
  std::string tls_ca_file;
  std::string tls_cert_file;  // client certificate (mutual TLS), with tls_key_file
  std::string tls_key_file;
  std::string tls_server_name;
  std::string worker_id;                           // stable across restarts; default hostname + pid
  std::string cache_dir = "./peftd-worker-cache";  // datasets by sha256, job scratch folders
  std::string model_root;                          // where base_model resolves
  int slots = 1;                                   // jobs run at once
  // Where the other ranks of a gang reach the rendezvous store this worker opens as rank 0;
  // empty: 127.0.0.1 when `server` is on this machine, else the hostname.
  std::string advertise_host;
  std::string device = "cpu";
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
};

// The channel options (address, token, TLS files) of `options`, for common/grpc_channel.h.
ChannelOptions ChannelOptionsOf(const LeaseLoopOptions& options);

class LeaseLoop {
 public:
  // An unreadable TLS file gives a loop whose calls fail (a TLS handshake error, never plaintext):
  // check the options first with MakeChannelOrError(ChannelOptionsOf(options)).
  LeaseLoop(LeaseLoopOptions options, JobRunner runner);
  ~LeaseLoop();

  // Runs until Stop(). Thread-safe with Stop().
  void Run();
  // Asks Run() to return: running jobs are cancelled and not reported (the server requeues them
  // when their lease expires, resuming from their last checkpoint).
  void Stop();

 private:
  struct ActiveJob;

  bool Register();
  bool HeartbeatOnce();
  // Sends `job`'s pending report at once, in a heartbeat of its own that asks for no work. The
  // checkpoint callback calls it before uploading, so the server sees the step's progress and the
  // CHECKPOINTING phase before the checkpoint. On failure the report waits for the next beat.
  void FlushReport(ActiveJob& job);
  // Applies a heartbeat reply's cancel and drop lists (takes mu_). A drop answers the report of
  // the attempt in `reported` (job id -> attempt): it does not stop a newer attempt of the job.
  void ApplyJobCommands(const v1::HeartbeatResponse& resp,
                        const std::map<std::string, int>& reported);
  // Starts the job of `lease`, replacing a stale attempt of it (mu_ held).
  void TakeLeaseLocked(const v1::Lease& lease);
  void RunJob(std::shared_ptr<ActiveJob> job);
  absl::Status Prepare(ActiveJob& job, JobInputs* inputs);
  // Uploads the bytes of `produce` as a checkpoint of `step` or as the adapter (the merged model
  // when `merged`), retrying while the server is unreachable.
  absl::Status Upload(bool checkpoint, const ActiveJob& job, int64_t step, bool merged,
                      const BlobProducer& produce);
  // Reports the end of the attempt (worker/job_completion.h), retrying while the server is
  // unreachable. `transfer_failed`: the error came from moving a blob to or from the server.
  void Complete(ActiveJob& job, const absl::StatusOr<JobOutputs>& result, bool transfer_failed);
  void ReapFinished();
  void SetupContext(grpc::ClientContext* ctx, absl::Duration deadline) const;
  // Logs a failed Register / Heartbeat to stderr, once per distinct error (Run's thread only).
  void ReportConnectionError(const grpc::Status& st);
  void SleepFor(absl::Duration d);
  // Asks Run() for a heartbeat now rather than at the end of the interval (a phase change).
  void BeatSoon();
  // Run's wait between heartbeats: the interval, or until BeatSoon() or Stop().
  void SleepUntilNextBeat();
  // Joins the threads of `jobs` (after they were told to stop).
  static void JoinAll(std::vector<std::shared_ptr<ActiveJob>> jobs);

  LeaseLoopOptions options_;
  JobRunner runner_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  absl::Duration heartbeat_interval_ = absl::Seconds(2);
  std::string last_connection_error_;  // Run's thread only

  // Held across a heartbeat (taking the reports, the RPC, putting back what was not delivered),
  // so reports reach the server in the order they were taken. Taken before mu_.
  std::mutex heartbeat_mu_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;                                        // guarded by mu_
  bool registered_ = false;                                  // guarded by mu_
  bool beat_soon_ = false;                                   // guarded by mu_
  std::chrono::steady_clock::time_point next_regular_beat_;  // guarded by mu_
  std::map<std::string, std::shared_ptr<ActiveJob>> jobs_;   // guarded by mu_
  // Attempts replaced by a newer lease of their job, until their thread ends. Guarded by mu_.
  std::vector<std::shared_ptr<ActiveJob>> retired_;
};

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_LEASE_LOOP_H_
