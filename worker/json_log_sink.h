// The `train` command's JSON-lines log: one object per line, flushed as it is written, so a
// reader (or a test) can follow a live run and a killed run leaves every completed line. Every
// object has "type" and "time" (Unix seconds); the schema of each type is in docs/worker.md:
//   phase {phase}      step {step, total_steps, loss, learning_rate, ...}
//   eval {step, loss, accuracy?, gate_sparsity?}      checkpoint {step, dir}
//   log {level, message}      and the command's own start / summary / cancelled / error.
#ifndef PEFTD_WORKER_JSON_LOG_SINK_H_
#define PEFTD_WORKER_JSON_LOG_SINK_H_

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/progress.h"

namespace peftd::worker {

class JsonLogSink : public train::ProgressSink {
 public:
  // Opens `path` (created; truncated unless `append`). The file may be a FIFO.
  static absl::StatusOr<std::unique_ptr<JsonLogSink>> Open(const std::string& path, bool append);
  ~JsonLogSink() override;

  // Writes {"type": type, "time": now, ...fields}. Thread-safe.
  void Write(const std::string& type, nlohmann::json fields);

  void OnPhase(train::Phase phase) override;
  void OnStep(const train::StepMetrics& m) override;
  void OnEval(const train::EvalMetrics& m) override;
  void OnCheckpoint(int64_t step, const std::string& dir) override;
  void OnLog(train::LogLevel level, const std::string& message) override;

 private:
  explicit JsonLogSink(std::FILE* file) : file_(file) {}
  std::mutex mu_;
  std::FILE* file_;  // guarded by mu_
};

const char* LogLevelName(train::LogLevel level);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_JSON_LOG_SINK_H_
