// STUB until branch `svc` lands: spawns and restarts the local peftd-worker children.
#ifndef PEFTD_SERVER_WORKER_SUPERVISOR_H_
#define PEFTD_SERVER_WORKER_SUPERVISOR_H_

#include <string>

#include "absl/status/status.h"
#include "server/options.h"

namespace peftd::server {

class WorkerSupervisor {
 public:
  WorkerSupervisor(const ServerOptions& options, std::string server_address);
  ~WorkerSupervisor();
  absl::Status Start();
  void Stop();

 private:
  ServerOptions options_;
  std::string server_address_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_WORKER_SUPERVISOR_H_
