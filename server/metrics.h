// The server's Prometheus series (DESIGN.md "Metrics"): one registry, fed by the scheduler from
// job transitions and worker heartbeats, so the server is the only scrape target. Base units,
// `_total` counters, histograms. `job_id` is the only unbounded label and only on live-job series,
// which RemoveJob drops when the job ends.
//
// Series (labels):
//   peftd_build_info{version}                         gauge 1
//   peftd_start_time_seconds                          gauge, unix time the server started
//   peftd_jobs{state}                                 gauge, every state always present
//   peftd_jobs_submitted_total{method}                counter
//   peftd_jobs_finished_total{method,state}           counter, state = SUCCEEDED|FAILED|CANCELLED
//   peftd_workers{status}                             gauge, statuses as the scheduler names them
//   peftd_job_queue_wait_seconds                      histogram, QUEUED -> RUNNING
//   peftd_train_step_duration_seconds                 histogram, one observation per optimizer step
//   per live job:
//   peftd_train_loss{job_id,method}                   gauge
//   peftd_eval_loss{job_id}                           gauge, once the job has evaluated
//   peftd_eval_accuracy{job_id}                       gauge, once evaluated with accuracy > 0
//   peftd_learning_rate{job_id}                       gauge
//   peftd_grad_norm{job_id}                           gauge
//   peftd_train_tokens_total{job_id}                  counter, from cumulative tokens_seen
//   peftd_train_tokens_per_second{job_id}             gauge
//   peftd_job_progress_ratio{job_id}                  gauge, step / total_steps in [0, 1]
//   peftd_job_eta_seconds{job_id}                     gauge, when the worker knows it
//   peftd_gate_sparsity_ratio{job_id,module}          gauge, token gate on, per sequence
//   peftd_gate_token_sparsity_ratio{job_id,module}    gauge, token gate on, token-weighted
//   peftd_gate_tau{job_id,module}                     gauge, token gate on
//   peftd_adalora_rank{job_id,module}                 gauge, AdaLoRA
//   peftd_adadhp_active_modules{job_id}               gauge, AdaDHP
// Method and state label values are the proto enum names in lower case ("lora", "succeeded").
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
class Exposer;
class Registry;
}  // namespace prometheus

namespace peftd::server {

// The `module` label of a module path: "<last numeric component>.<last component>", so
// "model.layers.3.self_attn.q_proj" -> "3.q_proj" and "transformer.h.11.attn.c_attn" ->
// "11.c_attn". A path without a numeric component keeps its name minus a leading "model."
// ("lm_head" -> "lm_head", "model.norm" -> "norm"). Bounded by layers x projections.
std::string ModuleLabel(const std::string& module_path);

// Owns the registry and every series above. All methods are thread-safe.
class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A job was accepted (CreateJob, not an idempotent repeat).
  void JobSubmitted(v1::Method method);
  // A job reached a final state.
  void JobFinished(v1::Method method, v1::JobState state);
  // Jobs per state, as counted by the store; states missing from `counts` are set to 0.
  void SetJobsByState(const std::map<v1::JobState, int64_t>& counts);
  // Workers per status ("idle", "busy", "lost", ...); statuses seen before and missing now -> 0.
  void SetWorkers(const std::map<std::string, int64_t>& counts);
  // Seconds a job waited in QUEUED before a worker took it.
  void ObserveQueueWait(double seconds);
  // Optimizer step durations from a heartbeat (ProgressReport.step_durations_seconds).
  void ObserveStepDurations(const std::vector<double>& seconds);
  // The latest progress of a running job (from a heartbeat). tokens_seen is cumulative: the
  // counter grows by the increase and never goes down. Before the first step (step 0) only the
  // eval series are set.
  void UpdateJobProgress(const std::string& job_id, v1::Method method,
                         const v1::JobProgress& progress);
  // Drops every live-job series of `job_id`: call when the job reaches a final state (and when a
  // lost lease requeues it, so a dead attempt's numbers do not linger). Unknown ids: no-op.
  void RemoveJob(const std::string& job_id);

  // The Prometheus text exposition of the registry (what /metrics serves).
  std::string Serialize() const;
  std::shared_ptr<prometheus::Registry> registry() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Serves a Metrics registry at http://ADDR/metrics (prometheus-cpp's civetweb Exposer).
class MetricsServer {
 public:
  // Binds `addr` ("127.0.0.1:9464", "127.0.0.1:0" for any free port, "[::1]:9464").
  // Unavailable naming the address (and --metrics-listen) when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& addr,
                                                              Metrics& metrics);
  // Stops serving, within milliseconds (civetweb's listener, which polls in 2 s quanta, is woken
  // by connections while it is joined).
  ~MetricsServer();
  // The bound port (the real one when `addr` asked for port 0).
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  std::string dial_host_;  // where the listener is reached from this process
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_METRICS_H_
