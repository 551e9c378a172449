#include "server/metrics.h"

#include <netdb.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

#ifndef PEFTD_VERSION
#define PEFTD_VERSION "unknown"
#endif

namespace peftd::server {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Queue waits run from sub-second (idle cluster) to hours (busy one).
const Histogram::BucketBoundaries kQueueWaitBuckets = {0.1, 0.5, 1,   2.5, 5,    10,   30,
                                                       60,  120, 300, 600, 1800, 3600, 14400};
// One optimizer step: milliseconds on the tiny model, tens of seconds for a 7B model on CPU.
const Histogram::BucketBoundaries kStepBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                  1,     2.5,  5,     10,   30,  60,   120};

const v1::JobState kStates[] = {v1::VALIDATING, v1::QUEUED,     v1::RUNNING,  v1::SUCCEEDED,
                                v1::FAILED,     v1::CANCELLING, v1::CANCELLED};

std::string MethodLabel(v1::Method method) {
  const std::string& name = v1::Method_Name(method);
  return name.empty() ? "unknown" : absl::AsciiStrToLower(name);
}

std::string StateLabel(v1::JobState state) {
  const std::string& name = v1::JobState_Name(state);
  return name.empty() ? "unknown" : absl::AsciiStrToLower(name);
}

bool IsNumber(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
}

Family<Gauge>& GaugeFamily(prometheus::Registry& r, const std::string& name,
                           const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

Family<Counter>& CounterFamily(prometheus::Registry& r, const std::string& name,
                               const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

// The host to connect to for a listener bound to `addr`: wildcards become loopback.
std::string DialHost(const std::string& addr) {
  std::string host = addr.substr(0, addr.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0" || host == "*") return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

// Opens a TCP connection to host:port and closes it; errors are ignored.
void ConnectAndClose(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    (void)::connect(fd, a->ai_addr, a->ai_addrlen);
    ::close(fd);
    break;
  }
  ::freeaddrinfo(found);
}

}  // namespace

std::string ModuleLabel(const std::string& module_path) {
  const std::vector<absl::string_view> parts = absl::StrSplit(module_path, '.');
  for (size_t i = parts.size(); i-- > 0;) {
    if (IsNumber(parts[i])) {
      // A path ending in a number (e.g. "layers.3") has no projection to add.
      if (i + 1 == parts.size()) return std::string(parts[i]);
      return absl::StrCat(parts[i], ".", parts.back());
    }
  }
  absl::string_view name = module_path;
  absl::ConsumePrefix(&name, "model.");
  return std::string(name);
}

// The live series of one job; pointers into the families, null until first set.
struct JobSeriesEntry {
  std::string method;
  Gauge* train_loss = nullptr;
  Gauge* eval_loss = nullptr;
  Gauge* eval_accuracy = nullptr;
  Gauge* learning_rate = nullptr;
  Gauge* grad_norm = nullptr;
  Counter* tokens = nullptr;
  int64_t tokens_seen = 0;  // what `tokens` has counted so far
  Gauge* tokens_per_second = nullptr;
  Gauge* progress = nullptr;
  Gauge* eta = nullptr;
  Gauge* adadhp_active = nullptr;
  std::map<std::string, Gauge*> sparsity, token_sparsity, tau, rank;  // by module label
  std::map<int, Gauge*> rank_step, rank_allreduce;                    // gangs: by rank
};

struct Metrics::Impl {
  explicit Impl(std::shared_ptr<prometheus::Registry> r)
      : registry(std::move(r)),
        build_info(GaugeFamily(*registry, "peftd_build_info",
                               "Always 1; the version label says which peftd is running.")),
        start_time(GaugeFamily(*registry, "peftd_start_time_seconds",
                               "Unix time at which this server started.")),
        jobs(GaugeFamily(*registry, "peftd_jobs", "Jobs in the store by state.")),
        submitted(CounterFamily(*registry, "peftd_jobs_submitted_total",
                                "Jobs accepted by CreateJob, by method.")),
        finished(CounterFamily(*registry, "peftd_jobs_finished_total",
                               "Jobs that reached a final state, by method and state.")),
        workers(GaugeFamily(*registry, "peftd_workers", "Registered workers by status.")),
        queue_wait(prometheus::BuildHistogram()
                       .Name("peftd_job_queue_wait_seconds")
                       .Help("Time jobs spent QUEUED before a worker took them.")
                       .Register(*registry)
                       .Add({}, kQueueWaitBuckets)),
        step_duration(prometheus::BuildHistogram()
                          .Name("peftd_train_step_duration_seconds")
                          .Help("Duration of one optimizer step, as reported by workers.")
                          .Register(*registry)
                          .Add({}, kStepBuckets)),
        train_loss(GaugeFamily(*registry, "peftd_train_loss",
                               "Mean training loss over the latest reporting window.")),
        eval_loss(GaugeFamily(*registry, "peftd_eval_loss", "Latest evaluation loss.")),
        eval_accuracy(GaugeFamily(*registry, "peftd_eval_accuracy",
                                  "Latest evaluation accuracy (sequence classification).")),
        learning_rate(GaugeFamily(*registry, "peftd_learning_rate", "Current learning rate.")),
        grad_norm(
            GaugeFamily(*registry, "peftd_grad_norm", "Global gradient norm before clipping.")),
        train_tokens(CounterFamily(*registry, "peftd_train_tokens_total",
                                   "Non-padding training tokens processed, over all attempts.")),
        tokens_per_second(GaugeFamily(*registry, "peftd_train_tokens_per_second",
                                      "Training throughput over the latest reporting window.")),
        progress(GaugeFamily(*registry, "peftd_job_progress_ratio",
                             "Optimizer steps done / total steps.")),
        eta(GaugeFamily(*registry, "peftd_job_eta_seconds",
                        "Estimated seconds until the job finishes training.")),
        gate_sparsity(GaugeFamily(*registry, "peftd_gate_sparsity_ratio",
                                  "Token gate sparsity as the paper defines it: the fraction of "
                                  "each sequence's tokens left unchanged, averaged over the "
                                  "window's sequences, per module (layer.projection).")),
        gate_token_sparsity(GaugeFamily(*registry, "peftd_gate_token_sparsity_ratio",
                                        "Fraction of all the window's tokens the token gate left "
                                        "unchanged (token-weighted), per module.")),
        gate_tau(GaugeFamily(*registry, "peftd_gate_tau",
                             "Token gate threshold tau, per module (layer.projection).")),
        adalora_rank(GaugeFamily(*registry, "peftd_adalora_rank",
                                 "AdaLoRA rank kept, per module (layer.projection).")),
        adadhp_active(
            GaugeFamily(*registry, "peftd_adadhp_active_modules", "Modules AdaDHP still adapts.")),
        rank_step(GaugeFamily(*registry, "peftd_rank_step_seconds",
                              "Gangs: the latest optimizer step duration of each rank.")),
        rank_allreduce(GaugeFamily(*registry, "peftd_rank_allreduce_seconds",
                                   "Gangs: seconds each rank spent in allreduce in the current "
                                   "attempt.")) {}

  static void SetRank(std::map<int, Gauge*>& slots, Family<Gauge>& family,
                      const std::string& job_id, int rank, double value) {
    Gauge*& g = slots[rank];
    if (g == nullptr) g = &family.Add({{"job_id", job_id}, {"rank", std::to_string(rank)}});
    g->Set(value);
  }

  JobSeriesEntry& SeriesFor(const std::string& job_id, v1::Method method) {
    auto& slot = live[job_id];
    if (slot == nullptr) {
      slot = std::make_unique<JobSeriesEntry>();
      slot->method = MethodLabel(method);
    }
    return *slot;
  }

  Gauge* JobGauge(Gauge*& slot, Family<Gauge>& family, const std::string& job_id) {
    if (slot == nullptr) slot = &family.Add({{"job_id", job_id}});
    return slot;
  }

  static void SetModule(std::map<std::string, Gauge*>& slots, Family<Gauge>& family,
                        const std::string& job_id, const std::string& module, double value) {
    const std::string label = ModuleLabel(module);
    Gauge*& g = slots[label];
    if (g == nullptr) g = &family.Add({{"job_id", job_id}, {"module", label}});
    g->Set(value);
  }

  template <typename T>
  static void Drop(T*& metric, Family<T>& family) {
    if (metric != nullptr) family.Remove(metric);
    metric = nullptr;
  }

  void RemoveSeries(JobSeriesEntry& s) {
    Drop(s.train_loss, train_loss);
    Drop(s.eval_loss, eval_loss);
    Drop(s.eval_accuracy, eval_accuracy);
    Drop(s.learning_rate, learning_rate);
    Drop(s.grad_norm, grad_norm);
    Drop(s.tokens, train_tokens);
    Drop(s.tokens_per_second, tokens_per_second);
    Drop(s.progress, progress);
    Drop(s.eta, eta);
    Drop(s.adadhp_active, adadhp_active);
    for (auto& [m, g] : s.sparsity) Drop(g, gate_sparsity);
    for (auto& [m, g] : s.token_sparsity) Drop(g, gate_token_sparsity);
    for (auto& [m, g] : s.tau) Drop(g, gate_tau);
    for (auto& [m, g] : s.rank) Drop(g, adalora_rank);
    for (auto& [r, g] : s.rank_step) Drop(g, rank_step);
    for (auto& [r, g] : s.rank_allreduce) Drop(g, rank_allreduce);
  }

  std::shared_ptr<prometheus::Registry> registry;
  Family<Gauge>& build_info;
  Family<Gauge>& start_time;
  Family<Gauge>& jobs;
  Family<Counter>& submitted;
  Family<Counter>& finished;
  Family<Gauge>& workers;
  Histogram& queue_wait;
  Histogram& step_duration;
  Family<Gauge>& train_loss;
  Family<Gauge>& eval_loss;
  Family<Gauge>& eval_accuracy;
  Family<Gauge>& learning_rate;
  Family<Gauge>& grad_norm;
  Family<Counter>& train_tokens;
  Family<Gauge>& tokens_per_second;
  Family<Gauge>& progress;
  Family<Gauge>& eta;
  Family<Gauge>& gate_sparsity;
  Family<Gauge>& gate_token_sparsity;
  Family<Gauge>& gate_tau;
  Family<Gauge>& adalora_rank;
  Family<Gauge>& adadhp_active;
  Family<Gauge>& rank_step;
  Family<Gauge>& rank_allreduce;

  std::mutex mu;
  std::map<std::string, std::unique_ptr<JobSeriesEntry>> live;  // guarded by mu
  std::map<std::string, Gauge*> worker_gauges;                  // guarded by mu
};

Metrics::Metrics() : impl_(std::make_unique<Impl>(std::make_shared<prometheus::Registry>())) {
  impl_->build_info.Add({{"version", PEFTD_VERSION}}).Set(1);
  impl_->start_time.Add({}).Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  for (v1::JobState s : kStates) impl_->jobs.Add({{"state", StateLabel(s)}}).Set(0);
}

Metrics::~Metrics() = default;

std::shared_ptr<prometheus::Registry> Metrics::registry() const { return impl_->registry; }

void Metrics::JobSubmitted(v1::Method method) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->submitted.Add({{"method", MethodLabel(method)}}).Increment();
}

void Metrics::JobFinished(v1::Method method, v1::JobState state) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->finished.Add({{"method", MethodLabel(method)}, {"state", StateLabel(state)}}).Increment();
}

void Metrics::SetJobsByState(const std::map<v1::JobState, int64_t>& counts) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (v1::JobState s : kStates) {
    auto it = counts.find(s);
    impl_->jobs.Add({{"state", StateLabel(s)}})
        .Set(it == counts.end() ? 0.0 : static_cast<double>(it->second));
  }
}

void Metrics::SetWorkers(const std::map<std::string, int64_t>& counts) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto& [status, gauge] : impl_->worker_gauges) {
    if (counts.count(status) == 0) gauge->Set(0);
  }
  for (const auto& [status, n] : counts) {
    Gauge*& g = impl_->worker_gauges[status];
    if (g == nullptr) g = &impl_->workers.Add({{"status", status}});
    g->Set(static_cast<double>(n));
  }
}

void Metrics::ObserveQueueWait(double seconds) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->queue_wait.Observe(std::max(0.0, seconds));
}

void Metrics::ObserveStepDurations(const std::vector<double>& seconds) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (double s : seconds) impl_->step_duration.Observe(std::max(0.0, s));
}

void Metrics::UpdateJobProgress(const std::string& job_id, v1::Method method,
                                const v1::JobProgress& p) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl& m = *impl_;
  JobSeriesEntry& s = m.SeriesFor(job_id, method);
  if (p.has_eval()) {
    m.JobGauge(s.eval_loss, m.eval_loss, job_id)->Set(p.eval_loss());
    if (p.eval_accuracy() > 0 || s.eval_accuracy != nullptr) {
      m.JobGauge(s.eval_accuracy, m.eval_accuracy, job_id)->Set(p.eval_accuracy());
    }
  }
  // A gang's ranks report step times and collective time of their own, from their first step.
  for (int r = 0; r < p.rank_step_seconds_size(); ++r) {
    if (p.rank_step_seconds(r) > 0 || s.rank_step.count(r)) {
      Impl::SetRank(s.rank_step, m.rank_step, job_id, r, p.rank_step_seconds(r));
    }
  }
  for (int r = 0; r < p.rank_allreduce_seconds_size(); ++r) {
    if (p.rank_allreduce_seconds(r) > 0 || s.rank_allreduce.count(r)) {
      Impl::SetRank(s.rank_allreduce, m.rank_allreduce, job_id, r, p.rank_allreduce_seconds(r));
    }
  }
  // A report before the job's first optimizer step carries no train loss, rate or gate state:
  // a 0 there would be a sample that never happened.
  if (p.step() <= 0) return;
  if (s.train_loss == nullptr) {
    s.train_loss = &m.train_loss.Add({{"job_id", job_id}, {"method", s.method}});
  }
  s.train_loss->Set(p.train_loss());
  m.JobGauge(s.learning_rate, m.learning_rate, job_id)->Set(p.learning_rate());
  m.JobGauge(s.grad_norm, m.grad_norm, job_id)->Set(p.grad_norm());
  m.JobGauge(s.tokens_per_second, m.tokens_per_second, job_id)->Set(p.tokens_per_second());
  if (s.tokens == nullptr) s.tokens = &m.train_tokens.Add({{"job_id", job_id}});
  if (p.tokens_seen() > s.tokens_seen) {
    s.tokens->Increment(static_cast<double>(p.tokens_seen() - s.tokens_seen));
    s.tokens_seen = p.tokens_seen();
  }
  if (p.total_steps() > 0) {
    const double ratio = static_cast<double>(p.step()) / static_cast<double>(p.total_steps());
    m.JobGauge(s.progress, m.progress, job_id)->Set(std::clamp(ratio, 0.0, 1.0));
  }
  if (p.eta_seconds() > 0) m.JobGauge(s.eta, m.eta, job_id)->Set(p.eta_seconds());
  for (const auto& g : p.gates()) {
    Impl::SetModule(s.sparsity, m.gate_sparsity, job_id, g.module(), g.sparsity());
    Impl::SetModule(s.token_sparsity, m.gate_token_sparsity, job_id, g.module(),
                    g.token_sparsity());
    Impl::SetModule(s.tau, m.gate_tau, job_id, g.module(), g.tau());
  }
  for (const auto& r : p.adalora_ranks()) {
    Impl::SetModule(s.rank, m.adalora_rank, job_id, r.module(), r.rank());
  }
  if (method == v1::ADADHP || p.adadhp_active_modules() > 0) {
    m.JobGauge(s.adadhp_active, m.adadhp_active, job_id)->Set(p.adadhp_active_modules());
  }
}

void Metrics::RemoveJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->live.find(job_id);
  if (it == impl_->live.end()) return;
  impl_->RemoveSeries(*it->second);
  impl_->live.erase(it);
}

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& addr,
                                                                    Metrics& metrics) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    // One serving thread: a scrape is a few kilobytes every few seconds.
    server->exposer_ = std::make_unique<prometheus::Exposer>(addr, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("--metrics-listen: cannot serve metrics on \"", addr,
                                               "\" (", e.what(),
                                               "); pick a free port, 0 for any, or \"off\""));
  }
  server->exposer_->RegisterCollectable(metrics.registry());
  // civetweb reads the bound address back with getsockname(), so port 0 reports the real port.
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return absl::InternalError(
        absl::StrCat("--metrics-listen: \"", addr, "\" bound but reports no port"));
  }
  server->port_ = ports[0];
  server->dial_host_ = DialHost(addr);
  return server;
}

MetricsServer::~MetricsServer() {
  if (exposer_ == nullptr) return;
  // civetweb's listener notices mg_stop only when its poll() returns, which it does every 2 s or
  // on a connection: connect (and hang up at once) until the exposer is gone, so that shutdown
  // does not wait out the quantum.
  std::atomic<bool> stopped{false};
  std::thread waker([&] {
    while (!stopped.load()) {
      ConnectAndClose(dial_host_, port_);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  exposer_.reset();
  stopped = true;
  waker.join();
}

}  // namespace peftd::server
