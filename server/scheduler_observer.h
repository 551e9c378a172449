// What the scheduler tells the outside world as jobs move (the metrics, in production). Every
// method has an empty default so an observer overrides only what it exports. Called with the
// scheduler's lock held: implementations must be quick and must not call back into the scheduler.
#ifndef PEFTD_SERVER_SCHEDULER_OBSERVER_H_
#define PEFTD_SERVER_SCHEDULER_OBSERVER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "peftd/v1/job.pb.h"

namespace peftd::server {

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void JobSubmitted(v1::Method method) {}
  virtual void JobFinished(v1::Method method, v1::JobState state) {}
  // Every state's count (absent states are 0), after each change.
  virtual void JobsByState(const std::map<v1::JobState, int64_t>& counts) {}
  // Workers by status ("idle", "busy", "lost"), after each change.
  virtual void Workers(const std::map<std::string, int64_t>& counts) {}
  // Seconds between submission and the first lease of a job.
  virtual void QueueWait(double seconds) {}
  virtual void StepDurations(const std::vector<double>& seconds) {}
  virtual void JobProgress(const std::string& job_id, v1::Method method,
                           const v1::JobProgress& progress) {}
  // The job reached a final state: drop its per-job series.
  virtual void JobRemoved(const std::string& job_id) {}
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_SCHEDULER_OBSERVER_H_
