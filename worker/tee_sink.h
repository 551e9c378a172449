// A ProgressSink that forwards every call to several others, in order (the `train` command's
// console line and JSON log).
#ifndef PEFTD_WORKER_TEE_SINK_H_
#define PEFTD_WORKER_TEE_SINK_H_

#include <string>
#include <vector>

#include "worker/train/progress.h"

namespace peftd::worker {

class TeeSink : public train::ProgressSink {
 public:
  // Sinks are not owned; null entries are skipped.
  explicit TeeSink(std::vector<train::ProgressSink*> sinks) : sinks_(std::move(sinks)) {}

  void OnPhase(train::Phase phase) override {
    for (auto* s : sinks_)
      if (s) s->OnPhase(phase);
  }
  void OnStep(const train::StepMetrics& m) override {
    for (auto* s : sinks_)
      if (s) s->OnStep(m);
  }
  void OnEval(const train::EvalMetrics& m) override {
    for (auto* s : sinks_)
      if (s) s->OnEval(m);
  }
  void OnCheckpoint(int64_t step, const std::string& dir) override {
    for (auto* s : sinks_)
      if (s) s->OnCheckpoint(step, dir);
  }
  void OnLog(train::LogLevel level, const std::string& message) override {
    for (auto* s : sinks_)
      if (s) s->OnLog(level, message);
  }

 private:
  std::vector<train::ProgressSink*> sinks_;
};

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_TEE_SINK_H_
