// STUB until branch `svc` lands (its version replaces this file): the Prometheus series.
#ifndef PEFTD_SERVER_METRICS_H_
#define PEFTD_SERVER_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "peftd/v1/job.pb.h"

namespace prometheus {
class Registry;
class Exposer;
}  // namespace prometheus

namespace peftd::server {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  std::shared_ptr<prometheus::Registry> registry() { return registry_; }
  void JobSubmitted(v1::Method method) {}
  void JobFinished(v1::Method method, v1::JobState state) {}
  void SetJobsByState(const std::map<v1::JobState, int64_t>& counts) {}
  void SetWorkers(const std::map<std::string, int64_t>& counts) {}
  void ObserveQueueWait(double seconds) {}
  void ObserveStepDurations(const std::vector<double>& seconds) {}
  void UpdateJobProgress(const std::string& job_id, v1::Method method,
                         const v1::JobProgress& progress) {}
  void RemoveJob(const std::string& job_id) {}

 private:
  std::shared_ptr<prometheus::Registry> registry_;
};

class MetricsServer {
 public:
  // Serves /metrics of `metrics` on `addr` ("127.0.0.1:0" picks a port).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& addr,
                                                              Metrics& metrics);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_METRICS_H_
