// Feeds the scheduler's observations to the Prometheus series (server/metrics.h).
#ifndef PEFTD_SERVER_METRICS_OBSERVER_H_
#define PEFTD_SERVER_METRICS_OBSERVER_H_

#include "server/metrics.h"
#include "server/scheduler_observer.h"

namespace peftd::server {

class MetricsObserver : public SchedulerObserver {
 public:
  explicit MetricsObserver(Metrics* metrics) : metrics_(metrics) {}
  void JobSubmitted(v1::Method method) override { metrics_->JobSubmitted(method); }
  void JobFinished(v1::Method method, v1::JobState state) override {
    metrics_->JobFinished(method, state);
  }
  void JobsByState(const std::map<v1::JobState, int64_t>& counts) override {
    metrics_->SetJobsByState(counts);
  }
  void Workers(const std::map<std::string, int64_t>& counts) override {
    metrics_->SetWorkers(counts);
  }
  void QueueWait(double seconds) override { metrics_->ObserveQueueWait(seconds); }
  void StepDurations(const std::vector<double>& seconds) override {
    metrics_->ObserveStepDurations(seconds);
  }
  void JobProgress(const std::string& job_id, v1::Method method,
                   const v1::JobProgress& progress) override {
    metrics_->UpdateJobProgress(job_id, method, progress);
  }
  void JobRemoved(const std::string& job_id) override { metrics_->RemoveJob(job_id); }

 private:
  Metrics* metrics_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_METRICS_OBSERVER_H_
