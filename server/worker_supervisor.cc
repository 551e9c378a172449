// STUB until branch `svc` lands: starts no worker.
#include "server/worker_supervisor.h"

namespace peftd::server {

WorkerSupervisor::WorkerSupervisor(const ServerOptions& options, std::string server_address)
    : options_(options), server_address_(std::move(server_address)) {}
WorkerSupervisor::~WorkerSupervisor() { Stop(); }
absl::Status WorkerSupervisor::Start() { return absl::OkStatus(); }
void WorkerSupervisor::Stop() {}

}  // namespace peftd::server
