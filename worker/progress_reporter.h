// What a running job tells the server: the trainer's callbacks (train::ProgressSink) turned into
// the job's ProgressReport, which the lease loop's heartbeats deliver (each takes the events and
// step durations gathered since the last one, and the newest values of everything else).
#ifndef PEFTD_WORKER_PROGRESS_REPORTER_H_
#define PEFTD_WORKER_PROGRESS_REPORTER_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "peftd/v1/worker.pb.h"
#include "worker/train/progress.h"

namespace peftd::worker {

// A job's report and the mutex that guards it.
struct JobReport {
  std::mutex mu;
  v1::ProgressReport report;  // guarded by mu
};

class ProgressReporter : public train::ProgressSink {
 public:
  struct Hooks {
    // The phase changed: deliver it now rather than at the next beat (a job shown CHECKPOINTING
    // for up to a heartbeat interval after it went back to training would be a stale answer).
    std::function<void()> phase_changed;
    // A checkpoint of `step` is complete in `dir`: upload it (after delivering the report, so the
    // server sees the step before its checkpoint). An error is logged as a warning: the job goes
    // on, and resumes from an older checkpoint if it has to.
    std::function<absl::Status(int64_t step, const std::string& dir)> checkpoint;
  };

  // `report` must outlive the reporter.
  ProgressReporter(JobReport* report, Hooks hooks);

  void OnPhase(train::Phase phase) override;
  void OnStep(const train::StepMetrics& m) override;
  void OnEval(const train::EvalMetrics& m) override;
  void OnCheckpoint(int64_t step, const std::string& dir) override;
  void OnLog(train::LogLevel level, const std::string& message) override;

 private:
  JobReport* job_;
  Hooks hooks_;
};

// After a failed heartbeat: puts the events and step durations of `sent` back in front of those
// reported since, and keeps the newest values of everything else (the report's mutex held).
void RestoreUndelivered(const v1::ProgressReport& sent, v1::ProgressReport* report);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_PROGRESS_REPORTER_H_
