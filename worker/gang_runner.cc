#include "worker/gang_runner.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/train/data_parallel.h"

namespace peftd::worker {
namespace {

// Passes everything on and reports this rank's seconds in collectives after each step.
class GangSink : public train::ProgressSink {
 public:
  GangSink(train::ProgressSink* inner, const train::DataParallel* dp,
           std::function<void(double)> allreduce)
      : inner_(inner), dp_(dp), allreduce_(std::move(allreduce)) {}
  void OnPhase(train::Phase phase) override {
    if (inner_) inner_->OnPhase(phase);
  }
  void OnStep(const train::StepMetrics& m) override {
    if (allreduce_) allreduce_(dp_->allreduce_seconds());
    if (inner_) inner_->OnStep(m);
  }
  void OnEval(const train::EvalMetrics& m) override {
    if (inner_) inner_->OnEval(m);
  }
  void OnCheckpoint(int64_t step, const std::string& dir) override {
    if (inner_) inner_->OnCheckpoint(step, dir);
  }
  void OnLog(train::LogLevel level, const std::string& message) override {
    if (inner_) inner_->OnLog(level, message);
  }

 private:
  train::ProgressSink* inner_;
  const train::DataParallel* dp_;
  std::function<void(double)> allreduce_;
};

absl::StatusOr<JobOutputs> RunRank(const JobInputs& inputs, train::ProgressSink* sink,
                                   const std::atomic<bool>* cancelled, RunJobOptions options) {
  const GangInputs& gang = inputs.gang;
  train::DataParallelOptions dp;
  dp.rank = gang.rank;
  dp.world_size = gang.world_size;
  dp.key = gang.key;
  dp.timeout = std::chrono::milliseconds(gang.timeout_ms);
  dp.rendezvous = gang.rank == 0 ? absl::StrCat(gang.advertise_host, ":0") : gang.address;
  dp.listening = [&](uint16_t port) {
    if (gang.opened) gang.opened(absl::StrCat(gang.advertise_host, ":", port));
  };
  if (sink) {
    sink->OnLog(train::LogLevel::kInfo,
                absl::StrCat("rank ", gang.rank, " of ", gang.world_size, ": meeting the gang",
                             gang.rank == 0 ? "" : absl::StrCat(" at ", gang.address)));
  }
  absl::StatusOr<std::unique_ptr<train::DataParallel>> connected = train::DataParallel::Connect(dp);
  if (!connected.ok()) {
    return Annotate(connected.status(),
                    absl::StrCat("rank ", gang.rank, " of a gang of ", gang.world_size));
  }
  if (gang.joined) gang.joined();
  options.data_parallel = connected->get();
  GangSink gang_sink(sink, connected->get(), gang.allreduce_seconds);
  return RunJob(inputs, &gang_sink, cancelled, options);
}

}  // namespace

JobRunner MakeGangRunner(RunJobOptions options) {
  return [options](const JobInputs& inputs, train::ProgressSink* sink,
                   const std::atomic<bool>* cancelled) -> absl::StatusOr<JobOutputs> {
    if (inputs.gang.world_size <= 1) return RunJob(inputs, sink, cancelled, options);
    return RunRank(inputs, sink, cancelled, options);
  };
}

}  // namespace peftd::worker
