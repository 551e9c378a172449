// The whole peftd server as one object (as Triton's grpc_server.h): opens the data dir, the job
// store and the blob store, starts the scheduler and its tick thread, the gRPC services (with
// health and reflection), the metrics endpoint and the local worker children. main.cc is only
// flags and signals around it; integration tests start the real binary.
#ifndef PEFTD_SERVER_PEFTD_SERVER_H_
#define PEFTD_SERVER_PEFTD_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "server/options.h"
#include "server/scheduler.h"
#include "storage/data_dir_lock.h"

namespace peftd::server {

class JobServiceImpl;
class WorkerServiceImpl;
class Metrics;
class MetricsObserver;
class MetricsServer;
class ReflectionService;
class WorkerSupervisor;

class PeftdServer {
 public:
  // Starts everything; the gRPC and metrics ports are bound when this returns ("...:0" picks
  // free ones). `clock` must outlive the server.
  static absl::StatusOr<std::unique_ptr<PeftdServer>> Start(const ServerOptions& options,
                                                            const Clock* clock = Clock::Real());
  ~PeftdServer();

  // Stops accepting calls (health turns NOT_SERVING), ends watch streams (told to resume later),
  // gives the other open calls up to 1 s (never more than `grace`) before cancelling them, then
  // stops the worker children (SIGKILL after `grace`) and the tick thread. Idempotent.
  void Stop(absl::Duration grace);
  void Stop() { Stop(shutdown_grace_); }

  const std::string& grpc_address() const { return grpc_address_; }
  // Empty when metrics are off (--metrics-listen "").
  const std::string& metrics_address() const { return metrics_address_; }
  Scheduler* scheduler() { return scheduler_.get(); }

 private:
  PeftdServer() = default;
  void TickLoop(absl::Duration every);
  // Deletes the blobs no record refers to any more, past their grace (storage/blob_store.h).
  void SweepBlobs();

  const Clock* clock_ = nullptr;
  std::unique_ptr<storage::DataDirLock> data_dir_lock_;  // first in, last out
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<MetricsObserver> observer_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<ReflectionService> reflection_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<WorkerSupervisor> supervisor_;
  std::string grpc_address_;
  std::string metrics_address_;
  absl::Duration shutdown_grace_ = absl::Seconds(10);
  absl::Duration blob_sweep_interval_ = absl::Minutes(10);
  absl::Duration blob_sweep_grace_ = absl::Hours(1);

  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;  // guarded by mu_
  std::thread tick_thread_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_PEFTD_SERVER_H_
