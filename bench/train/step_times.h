// What bench_train measures of a training run, for every family: the process's peak RSS and CPU
// seconds, every step's wall and CPU seconds (with an op counter on one step), their median, and
// the adapter config of a variant ("lora", "dora_S", ...) at r = 8.
#ifndef PEFTD_BENCH_TRAIN_STEP_TIMES_H_
#define PEFTD_BENCH_TRAIN_STEP_TIMES_H_

#include <sys/resource.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/peft_model.h"
#include "bench/train/op_counts.h"
#include "nlohmann/json.hpp"
#include "worker/train/progress.h"

namespace peftd::bench {

inline double PeakRssMb() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// User + system CPU seconds of the process so far, every thread included: unlike wall time, a
// step descheduled by other processes on a shared machine does not grow.
inline double ProcessCpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Every step's wall and CPU seconds; with a counter, what the step `counted_step` (1-based)
// executes. The trainer reports every step (log_every_steps = 1).
class StepTimes : public train::ProgressSink {
 public:
  StepTimes(OpCounter* counter, int64_t counted_step)
      : counter_(counter), counted_step_(counted_step), cpu_(ProcessCpuSeconds()) {
    if (counter_ && counted_step_ == 1) counter_->Start();
  }
  void OnStep(const train::StepMetrics& m) override {
    const double cpu = ProcessCpuSeconds();
    seconds.push_back(m.step_seconds);
    cpu_seconds.push_back(cpu - cpu_);
    if (counter_ && m.step == counted_step_) counts = counter_->Stop();
    if (counter_ && m.step + 1 == counted_step_) counter_->Start();
    cpu_ = ProcessCpuSeconds();  // the counter's own work is not the step's
  }
  std::vector<double> seconds, cpu_seconds;
  nlohmann::json counts;

 private:
  OpCounter* counter_;
  int64_t counted_step_;
  double cpu_;
};

// The adapter of `variant` (a method name, "_S" for the token gate) at r = 8, alpha 16 (the
// peer's LoRA), on `targets`.
inline absl::StatusOr<adapters::AdapterConfig> VariantAdapterConfig(
    const std::string& variant, std::vector<std::string> targets) {
  adapters::AdapterConfig ac;
  std::string method = variant;
  const bool gated = method.size() > 2 && method.substr(method.size() - 2) == "_S";
  if (gated) method = method.substr(0, method.size() - 2);
  auto kind = adapters::ParseMethod(method);
  if (!kind.ok()) return kind.status();
  ac.method = *kind;
  ac.lora = {.r = 8, .alpha = 16};
  ac.adalora = {.init_r = 8, .alpha = 16};
  ac.adalora_schedule = {.target_r = 4, .tinit = 1, .tfinal = 1, .delta_t = 1};
  ac.hut = {.r = 8};
  if (gated) ac.gate = adapters::GateOptions{};
  ac.targets.target_modules = std::move(targets);
  return ac;
}

// The peer's runs into `out`: all of them as "baseline_runs"; the fastest as "baseline" (the
// conservative choice), and every result's "speedup_vs_baseline" against it; for CPU time the run
// that needed the least CPU per token, its "cpu_s" as "baseline_cpu_s" and every result's
// "cpu_speedup_vs_baseline".
inline void SetBaseline(const nlohmann::json& baselines, nlohmann::json& out) {
  nlohmann::json b, b_cpu;
  auto better = [](const nlohmann::json& run, const nlohmann::json& best, const char* key) {
    return run.contains(key) &&
           (!best.contains(key) || run[key].get<double>() > best[key].get<double>());
  };
  for (const nlohmann::json& run : baselines) {
    if (better(run, b, "tokens_per_s")) b = run;
    if (better(run, b_cpu, "tokens_per_cpu_s")) b_cpu = run;
  }
  out["baseline_runs"] = baselines;
  out["baseline"] = b;
  for (auto& r : out["results"]) {
    if (b.contains("tokens_per_s") && r.contains("tokens_per_s")) {
      r["speedup_vs_baseline"] = r["tokens_per_s"].get<double>() / b["tokens_per_s"].get<double>();
    }
    if (b_cpu.contains("tokens_per_cpu_s") && r.contains("tokens_per_cpu_s")) {
      r["cpu_speedup_vs_baseline"] =
          r["tokens_per_cpu_s"].get<double>() / b_cpu["tokens_per_cpu_s"].get<double>();
    }
  }
  if (b_cpu.contains("cpu_s")) out["baseline_cpu_s"] = b_cpu["cpu_s"];
}

}  // namespace peftd::bench

#endif  // PEFTD_BENCH_TRAIN_STEP_TIMES_H_
