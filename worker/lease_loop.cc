#include "worker/lease_loop.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/host_memory.h"
#include "common/status.h"
#include "common/status_grpc.h"
#include "common/tar.h"
#include "worker/job_completion.h"
#include "worker/lease_loop_internal.h"
#include "worker/progress_reporter.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

std::string DefaultAdvertiseHost(const std::string& server) {
  const std::string host = server.substr(0, server.rfind(':'));
  if (host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]") return "127.0.0.1";
  char name[256] = {0};
  gethostname(name, sizeof(name) - 1);
  return name;
}

bool Retryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kUnknown || code == absl::StatusCode::kInternal;
}

}  // namespace

ChannelOptions ChannelOptionsOf(const LeaseLoopOptions& options) {
  ChannelOptions c;
  c.address = options.server;
  c.token = options.auth_token;
  c.tls_ca_file = options.tls_ca_file;
  c.tls_cert_file = options.tls_cert_file;
  c.tls_key_file = options.tls_key_file;
  c.tls_server_name = options.tls_server_name;
  return c;
}

LeaseLoop::LeaseLoop(LeaseLoopOptions options, JobRunner runner)
    : options_(std::move(options)), runner_(std::move(runner)) {
  if (options_.worker_id.empty()) options_.worker_id = DefaultWorkerId();
  if (options_.advertise_host.empty())
    options_.advertise_host = DefaultAdvertiseHost(options_.server);
  grpc::ChannelArguments args;
  // Reconnect on our own backoff schedule, not gRPC's (up to 2 minutes by default), so a
  // restarted server sees its workers again within seconds.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.min_backoff)));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.min_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.max_backoff)));
  const ChannelOptions channel = ChannelOptionsOf(options_);
  auto made = MakeChannelOrError(channel, args);
  // Same fallback as MakeChannel: a TLS channel that fails its handshake, never plaintext.
  channel_ = made.ok() ? *std::move(made) : MakeChannel(channel);
  stub_ = v1::WorkerService::NewStub(channel_);
}

LeaseLoop::~LeaseLoop() {
  Stop();
  std::vector<std::shared_ptr<ActiveJob>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, job] : jobs_) jobs.push_back(job);
    jobs_.clear();
    jobs.insert(jobs.end(), retired_.begin(), retired_.end());
    retired_.clear();
  }
  JoinAll(std::move(jobs));
}

void LeaseLoop::JoinAll(std::vector<std::shared_ptr<ActiveJob>> jobs) {
  for (auto& job : jobs) {
    if (job->thread.joinable()) job->thread.join();
  }
}

void LeaseLoop::SetupContext(grpc::ClientContext* ctx, absl::Duration deadline) const {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  AddAuth(ctx, options_.auth_token);
}

void LeaseLoop::ReportConnectionError(const grpc::Status& st) {
  // Once per distinct error, not once per retry: a worker that cannot connect (server down, TLS,
  // token) says why without flooding its log.
  const bool refused = st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                       st.error_code() == grpc::StatusCode::PERMISSION_DENIED;
  const std::string what = absl::StrCat(refused ? "refused by " : "cannot reach ", options_.server,
                                        ": ", st.error_message());
  if (what == last_connection_error_) return;
  last_connection_error_ = what;
  std::cerr << "peftd-worker: " << what;
  switch (st.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      std::cerr << " (check --token, --token-file or PEFTD_TOKEN)";
      break;
    case grpc::StatusCode::UNAVAILABLE:
      if (!UsesTls(ChannelOptionsOf(options_))) {
        std::cerr << " (is peftd running there? if it serves TLS, pass --tls-ca)";
      } else {
        std::cerr << " (is peftd running there? with TLS check --tls-ca, --tls-server-name and, "
                     "for mutual TLS, --tls-cert/--tls-key)";
      }
      break;
    default:
      break;
  }
  std::cerr << "; retrying\n";
}

void LeaseLoop::BeatSoon() {
  std::lock_guard<std::mutex> lock(mu_);
  beat_soon_ = true;
  wake_.notify_all();
}

void LeaseLoop::SleepUntilNextBeat() {
  std::unique_lock<std::mutex> lock(mu_);
  // The regular beats keep their cadence: an early one does not push the next regular one back
  // (phase changes every few steps would otherwise leave the steps between them unreported).
  const auto now = std::chrono::steady_clock::now();
  if (next_regular_beat_ <= now) {
    next_regular_beat_ = now + absl::ToChronoNanoseconds(heartbeat_interval_);
  }
  const bool early =
      wake_.wait_until(lock, next_regular_beat_, [this] { return stop_ || beat_soon_; });
  if (!early)
    next_regular_beat_ =
        std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(heartbeat_interval_);
  beat_soon_ = false;
}

void LeaseLoop::SleepFor(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait_for(lock, absl::ToChronoNanoseconds(d), [this] { return stop_; });
}

void LeaseLoop::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = true;
  for (auto& [id, job] : jobs_) {
    job->dropped = true;
    job->cancelled = true;
  }
  for (auto& job : retired_) job->cancelled = true;
  wake_.notify_all();
}

void LeaseLoop::Run() {
  absl::Duration backoff = options_.min_backoff;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    bool registered;
    {
      std::lock_guard<std::mutex> lock(mu_);
      registered = registered_;
    }
    const bool ok = registered ? HeartbeatOnce() : Register();
    ReapFinished();
    if (!ok) {
      SleepFor(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    backoff = options_.min_backoff;
    if (registered) SleepUntilNextBeat();
  }
  std::vector<std::shared_ptr<ActiveJob>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, job] : jobs_) jobs.push_back(job);
    jobs_.clear();
    jobs.insert(jobs.end(), retired_.begin(), retired_.end());
    retired_.clear();
  }
  JoinAll(std::move(jobs));
}

bool LeaseLoop::Register() {
  v1::RegisterRequest req;
  req.set_worker_id(options_.worker_id);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  req.set_hostname(host);
  req.set_version("0.1.0");
  req.set_slots(options_.slots);
  v1::Device* device = req.add_devices();
  device->set_name(options_.device);
  // The server checks job estimates against it. A GPU's own memory is not known here (0).
  if (options_.device == "cpu") {
    auto memory = UsableMemoryBytes();
    if (memory.ok()) device->set_memory_bytes(*memory);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, job] : jobs_) {
      if (!job->finished) req.add_running_job_ids(id);
    }
  }
  v1::RegisterResponse resp;
  grpc::ClientContext ctx;
  SetupContext(&ctx, kRpcDeadline);
  grpc::Status st = stub_->Register(&ctx, req, &resp);
  if (!st.ok()) {
    ReportConnectionError(st);
    return false;
  }
  if (!last_connection_error_.empty()) {
    std::cerr << "peftd-worker: registered with " << options_.server << "\n";
    last_connection_error_.clear();
  }
  if (resp.heartbeat_interval_ms() > 0) {
    heartbeat_interval_ = absl::Milliseconds(resp.heartbeat_interval_ms());
  }
  std::lock_guard<std::mutex> lock(mu_);
  registered_ = true;
  return true;
}

bool LeaseLoop::HeartbeatOnce() {
  std::lock_guard<std::mutex> beat(heartbeat_mu_);
  v1::HeartbeatRequest req;
  req.set_worker_id(options_.worker_id);
  std::vector<std::pair<std::shared_ptr<ActiveJob>, v1::ProgressReport>> sent;
  std::map<std::string, int> reported;
  {
    std::lock_guard<std::mutex> lock(mu_);
    int running = 0;
    for (auto& [id, job] : jobs_) {
      if (job->dropped) continue;
      ++running;
      std::lock_guard<std::mutex> job_lock(job->progress.mu);
      v1::ProgressReport& report = job->progress.report;
      *req.add_reports() = report;
      sent.emplace_back(job, report);
      reported[id] = job->lease.attempt();
      report.clear_events();
      report.clear_step_durations_seconds();
    }
    req.set_free_slots(std::max(0, options_.slots - running));
  }
  v1::HeartbeatResponse resp;
  grpc::ClientContext ctx;
  SetupContext(&ctx, kRpcDeadline);
  grpc::Status st = stub_->Heartbeat(&ctx, req, &resp);
  if (!st.ok()) {
    // NOT_FOUND: a restarted server that does not know us yet; registering again is routine.
    if (st.error_code() != grpc::StatusCode::NOT_FOUND) ReportConnectionError(st);
    // Keep the undelivered events for the next beat, and register again: a restarted server
    // does not know us.
    for (auto& [job, report] : sent) {
      std::lock_guard<std::mutex> job_lock(job->progress.mu);
      RestoreUndelivered(report, &job->progress.report);
    }
    std::lock_guard<std::mutex> lock(mu_);
    registered_ = false;
    return false;
  }
  ApplyJobCommands(resp, reported);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& lease : resp.leases()) TakeLeaseLocked(lease);
  return true;
}

void LeaseLoop::TakeLeaseLocked(const v1::Lease& lease) {
  auto held = jobs_.find(lease.job_id());
  if (held != jobs_.end()) {
    // The same attempt: re-claimed after a server restart, it runs on.
    if (held->second->lease.attempt() == lease.attempt()) return;
    // Another attempt: the server gave up on the one held here (it stalled past its lease) and
    // leased the job anew. The old attempt stops without reporting; ignoring the new lease would
    // burn it too.
    held->second->dropped = true;
    held->second->cancelled = true;
    retired_.push_back(held->second);
    jobs_.erase(held);
  }
  auto job = std::make_shared<ActiveJob>();
  job->lease = lease;
  job->progress.report.set_job_id(lease.job_id());
  job->progress.report.set_attempt(lease.attempt());
  job->progress.report.set_phase(v1::LOADING_MODEL);
  job->progress.report.set_rank(lease.rank());
  jobs_[lease.job_id()] = job;
  job->thread = std::thread([this, job] { RunJob(job); });
}

void LeaseLoop::ApplyJobCommands(const v1::HeartbeatResponse& resp,
                                 const std::map<std::string, int>& reported) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& id : resp.cancel_job_ids()) {
    auto it = jobs_.find(id);
    if (it != jobs_.end()) it->second->cancelled = true;
  }
  for (const auto& id : resp.drop_job_ids()) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    auto sent = reported.find(id);
    if (sent != reported.end() && sent->second != it->second->lease.attempt()) continue;
    it->second->dropped = true;
    it->second->cancelled = true;
  }
}

void LeaseLoop::FlushReport(ActiveJob& job) {
  if (job.dropped) return;
  std::lock_guard<std::mutex> beat(heartbeat_mu_);
  v1::HeartbeatRequest req;
  req.set_worker_id(options_.worker_id);
  req.set_free_slots(0);
  v1::ProgressReport sent;
  {
    std::lock_guard<std::mutex> job_lock(job.progress.mu);
    sent = job.progress.report;
    job.progress.report.clear_events();
    job.progress.report.clear_step_durations_seconds();
  }
  *req.add_reports() = sent;
  v1::HeartbeatResponse resp;
  grpc::ClientContext ctx;
  SetupContext(&ctx, kRpcDeadline);
  grpc::Status st = stub_->Heartbeat(&ctx, req, &resp);
  if (!st.ok()) {  // Run's next heartbeat reports the error and delivers the report
    std::lock_guard<std::mutex> job_lock(job.progress.mu);
    RestoreUndelivered(sent, &job.progress.report);
    return;
  }
  ApplyJobCommands(resp, {{job.lease.job_id(), job.lease.attempt()}});
}

void LeaseLoop::ReapFinished() {
  std::vector<std::shared_ptr<ActiveJob>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (it->second->finished) {
        done.push_back(it->second);
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
    auto stopped = std::stable_partition(retired_.begin(), retired_.end(),
                                         [](const auto& job) { return !job->finished; });
    done.insert(done.end(), stopped, retired_.end());
    retired_.erase(stopped, retired_.end());
  }
  JoinAll(std::move(done));
}

absl::Status LeaseLoop::Upload(bool checkpoint, const ActiveJob& job, int64_t step, bool merged,
                               const BlobProducer& produce) {
  ASSIGN_OR_RETURN(const BlobDigest digest, DigestOf(produce));
  v1::UploadBlobRequest::Header header;
  header.set_job_id(job.lease.job_id());
  header.set_attempt(job.lease.attempt());
  header.set_step(step);
  header.set_merged(merged);
  absl::Duration backoff = options_.min_backoff;
  while (true) {
    if (job.dropped) return absl::AbortedError("the attempt was dropped");
    grpc::ClientContext ctx;
    SetupContext(&ctx, kBlobDeadline);
    bool server_error = false;
    absl::Status st = UploadBlob(
        header, digest, produce, &ctx,
        [&](grpc::ClientContext* c, v1::UploadBlobResponse* r) {
          return checkpoint ? stub_->UploadCheckpoint(c, r) : stub_->UploadAdapter(c, r);
        },
        &server_error);
    if (st.ok() || !server_error || !Retryable(st.code())) return st;
    SleepFor(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return st;
  }
}

void LeaseLoop::Complete(ActiveJob& job, const absl::StatusOr<JobOutputs>& result,
                         bool transfer_failed) {
  v1::ProgressReport last_report;
  {
    std::lock_guard<std::mutex> lock(job.progress.mu);
    last_report = job.progress.report;
  }
  const v1::CompleteJobRequest req =
      CompletionOf(options_.worker_id, job.lease, {result, job.cancelled, transfer_failed},
                   std::move(last_report));
  absl::Duration backoff = options_.min_backoff;
  while (!job.dropped) {
    grpc::ClientContext ctx;
    SetupContext(&ctx, kRpcDeadline);
    v1::CompleteJobResponse resp;
    grpc::Status st = stub_->CompleteJob(&ctx, req, &resp);
    if (st.ok() || !Retryable(FromGrpcStatus(st).code())) return;
    SleepFor(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
  }
}

void LeaseLoop::RunJob(std::shared_ptr<ActiveJob> job) {
  ProgressReporter::Hooks hooks;
  hooks.phase_changed = [this] { BeatSoon(); };
  hooks.checkpoint = [this, job](int64_t step, const std::string& dir) -> absl::Status {
    if (job->dropped) return absl::OkStatus();  // the server no longer wants it
    FlushReport(*job);
    const std::string file = (fs::path(dir) / "checkpoint.safetensors").string();
    absl::Status st = Upload(/*checkpoint=*/true, *job, step, false, FileBlob(file));
    // The step's adapter folder, when the trainer wrote one: what `download --step` serves.
    const fs::path adapter = fs::path(dir) / "adapter";
    std::error_code ec;
    if (st.ok() && fs::is_directory(adapter, ec)) {
      st = Upload(/*checkpoint=*/false, *job, step, false, ArchiveBlob(adapter.string()));
    }
    return job->dropped ? absl::OkStatus() : st;
  };
  ProgressReporter reporter(&job->progress, std::move(hooks));
  JobInputs inputs;
  bool transfer_failed = false;
  absl::StatusOr<JobOutputs> result = [&]() -> absl::StatusOr<JobOutputs> {
    absl::Status prepared = Prepare(*job, &inputs);
    if (!prepared.ok()) {
      transfer_failed = true;
      return prepared;
    }
    return runner_(inputs, &reporter, &job->cancelled);
  }();
  if (job->dropped) {
    job->finished = true;
    return;
  }
  // Rank 0 of a gang uploads what every rank holds; the others only say how they ended.
  if (result.ok() && job->lease.rank() == 0) {
    reporter.OnPhase(train::Phase::kExporting);
    FlushReport(*job);  // the last step and the export's log lines before "adapter uploaded"
    // Archived on the fly from the folders, never a whole archive in memory or on disk.
    absl::Status st =
        Upload(/*checkpoint=*/false, *job, 0, false, ArchiveBlob(result->adapter_dir));
    if (st.ok() && !result->merged_dir.empty()) {
      st = Upload(/*checkpoint=*/false, *job, 0, true, ArchiveBlob(result->merged_dir));
    }
    if (!st.ok()) {
      result = Annotate(st, "uploading the adapter");
      transfer_failed = true;
    }
  }
  if (!job->dropped) Complete(*job, result, transfer_failed);
  std::error_code ec;
  if (result.ok()) fs::remove_all(inputs.work_dir, ec);
  job->finished = true;
  std::lock_guard<std::mutex> lock(mu_);
  wake_.notify_all();
}

}  // namespace peftd::worker
