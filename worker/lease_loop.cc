#include "worker/lease_loop.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/status_grpc.h"
#include "common/status_payload.h"
#include "common/tar.h"
#include "google/protobuf/util/time_util.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
constexpr size_t kChunkBytes = 1 << 20;
constexpr absl::Duration kRpcDeadline = absl::Seconds(30);
constexpr absl::Duration kBlobDeadline = absl::Minutes(30);

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// User faults the user can fix by changing the spec or the data; everything else is the system's.
v1::JobError::Blame BlameFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:
      return v1::JobError::USER;
    default:
      return v1::JobError::SYSTEM;
  }
}

v1::JobPhase ToProtoPhase(train::Phase phase) {
  switch (phase) {
    case train::Phase::kLoadingModel:
      return v1::LOADING_MODEL;
    case train::Phase::kTraining:
      return v1::TRAINING;
    case train::Phase::kEvaluating:
      return v1::EVALUATING;
    case train::Phase::kCheckpointing:
      return v1::CHECKPOINTING;
    case train::Phase::kExporting:
      return v1::EXPORTING;
  }
  return v1::JOB_PHASE_UNSPECIFIED;
}

v1::JobEvent::Level ToProtoLevel(train::LogLevel level) {
  switch (level) {
    case train::LogLevel::kDebug:
      return v1::JobEvent::DEBUG;
    case train::LogLevel::kInfo:
      return v1::JobEvent::INFO;
    case train::LogLevel::kWarning:
      return v1::JobEvent::WARNING;
    case train::LogLevel::kError:
      return v1::JobEvent::ERROR;
  }
  return v1::JobEvent::INFO;
}

// After a failed heartbeat: puts the events and step durations of `sent` back in front of those
// reported since, and keeps the newest values of everything else (job->mu held).
// (Not MergeFrom: it would also append the repeated fields of the progress, such as the gates.)
void RestoreUndelivered(const v1::ProgressReport& sent, v1::ProgressReport* report) {
  v1::ProgressReport merged = *report;
  merged.clear_events();
  for (const auto& e : sent.events()) *merged.add_events() = e;
  for (const auto& e : report->events()) *merged.add_events() = e;
  merged.clear_step_durations_seconds();
  for (double d : sent.step_durations_seconds()) merged.add_step_durations_seconds(d);
  for (double d : report->step_durations_seconds()) merged.add_step_durations_seconds(d);
  *report = std::move(merged);
}

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::INTERNAL;
}

}  // namespace

struct LeaseLoop::ActiveJob {
  v1::Lease lease;
  std::atomic<bool> cancelled{false};
  std::atomic<bool> dropped{false};
  std::atomic<bool> finished{false};
  std::thread thread;
  std::mutex mu;
  v1::ProgressReport report;  // guarded by mu; events and step durations drained by heartbeats
};

// Turns the trainer's callbacks into the job's ProgressReport, and uploads checkpoints.
class LeaseLoop::Reporter : public train::ProgressSink {
 public:
  Reporter(LeaseLoop* loop, ActiveJob* job) : loop_(loop), job_(job) {}

  void OnPhase(train::Phase phase) override {
    bool changed;
    {
      std::lock_guard<std::mutex> lock(job_->mu);
      changed = job_->report.phase() != ToProtoPhase(phase);
      job_->report.set_phase(ToProtoPhase(phase));
    }
    // Told at once, not at the next beat: a job shown CHECKPOINTING or EVALUATING for up to a
    // heartbeat interval after it went back to training would be a stale answer.
    if (changed) loop_->BeatSoon();
  }

  void OnStep(const train::StepMetrics& m) override {
    std::lock_guard<std::mutex> lock(job_->mu);
    v1::JobProgress* p = job_->report.mutable_progress();
    p->set_step(m.step);
    p->set_total_steps(m.total_steps);
    p->set_epoch(m.epoch);
    p->set_tokens_seen(m.tokens_seen);
    p->set_eta_seconds(m.eta_seconds);
    p->set_train_loss(m.loss);
    p->set_learning_rate(m.learning_rate);
    p->set_grad_norm(m.grad_norm);
    p->set_tokens_per_second(m.tokens_per_second);
    p->set_gate_sparsity(m.gate_sparsity);
    p->set_gate_token_sparsity(m.gate_token_sparsity);
    p->clear_gates();
    for (const auto& [module, sparsity] : m.gate_sparsity_by_module) {
      auto* g = p->add_gates();
      g->set_module(module);
      g->set_sparsity(sparsity);
      auto tau = m.gate_tau_by_module.find(module);
      if (tau != m.gate_tau_by_module.end()) g->set_tau(tau->second);
      auto tokens = m.gate_token_sparsity_by_module.find(module);
      if (tokens != m.gate_token_sparsity_by_module.end()) g->set_token_sparsity(tokens->second);
    }
    p->clear_adalora_ranks();
    for (const auto& [module, rank] : m.adalora_rank_by_module) {
      auto* r = p->add_adalora_ranks();
      r->set_module(module);
      r->set_rank(static_cast<int32_t>(rank));
    }
    if (m.adadhp_active_modules >= 0) p->set_adadhp_active_modules(m.adadhp_active_modules);
    job_->report.add_step_durations_seconds(m.step_seconds);
  }

  void OnEval(const train::EvalMetrics& m) override {
    {
      std::lock_guard<std::mutex> lock(job_->mu);
      v1::JobProgress* p = job_->report.mutable_progress();
      p->set_eval_loss(m.loss);
      p->set_has_eval(true);
      if (m.accuracy >= 0) p->set_eval_accuracy(m.accuracy);
    }
    OnLog(train::LogLevel::kInfo,
          absl::StrCat("eval at step ", m.step, ": loss ", m.loss,
                       m.accuracy >= 0 ? absl::StrCat(", accuracy ", m.accuracy) : ""));
  }

  void OnCheckpoint(int64_t step, const std::string& dir) override {
    loop_->FlushReport(*job_);
    auto bytes = ReadWholeFile((fs::path(dir) / "checkpoint.safetensors").string());
    absl::Status st = bytes.ok()
                          ? loop_->UploadFile(/*checkpoint=*/true, *job_, step, false, *bytes)
                          : bytes.status();
    if (!st.ok()) {
      OnLog(train::LogLevel::kWarning,
            absl::StrCat("checkpoint of step ", step, " was not uploaded: ", st.message()));
    }
  }

  void OnLog(train::LogLevel level, const std::string& message) override {
    std::lock_guard<std::mutex> lock(job_->mu);
    v1::JobEvent* e = job_->report.add_events();
    e->set_level(ToProtoLevel(level));
    e->set_message(message);
    e->set_phase(job_->report.phase());  // the server keeps it: delivery may be phases later
    *e->mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  }

 private:
  LeaseLoop* loop_;
  ActiveJob* job_;
};

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
  std::map<std::string, std::shared_ptr<ActiveJob>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs.swap(jobs_);
  }
  for (auto& [id, job] : jobs) {
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
  std::map<std::string, std::shared_ptr<ActiveJob>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs.swap(jobs_);
  }
  for (auto& [id, job] : jobs) {
    if (job->thread.joinable()) job->thread.join();
  }
}

bool LeaseLoop::Register() {
  v1::RegisterRequest req;
  req.set_worker_id(options_.worker_id);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  req.set_hostname(host);
  req.set_version("0.1.0");
  req.add_devices()->set_name(options_.device);
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    int running = 0;
    for (auto& [id, job] : jobs_) {
      if (job->dropped) continue;
      ++running;
      std::lock_guard<std::mutex> job_lock(job->mu);
      *req.add_reports() = job->report;
      sent.emplace_back(job, job->report);
      job->report.clear_events();
      job->report.clear_step_durations_seconds();
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
      std::lock_guard<std::mutex> job_lock(job->mu);
      RestoreUndelivered(report, &job->report);
    }
    std::lock_guard<std::mutex> lock(mu_);
    registered_ = false;
    return false;
  }
  ApplyJobCommands(resp);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& lease : resp.leases()) {
    if (jobs_.count(lease.job_id())) continue;  // already ours (re-claimed after a restart)
    auto job = std::make_shared<ActiveJob>();
    job->lease = lease;
    job->report.set_job_id(lease.job_id());
    job->report.set_attempt(lease.attempt());
    job->report.set_phase(v1::LOADING_MODEL);
    jobs_[lease.job_id()] = job;
    job->thread = std::thread([this, job] { RunJob(job); });
  }
  return true;
}

void LeaseLoop::ApplyJobCommands(const v1::HeartbeatResponse& resp) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& id : resp.cancel_job_ids()) {
    auto it = jobs_.find(id);
    if (it != jobs_.end()) it->second->cancelled = true;
  }
  for (const auto& id : resp.drop_job_ids()) {
    auto it = jobs_.find(id);
    if (it != jobs_.end()) {
      it->second->dropped = true;
      it->second->cancelled = true;
    }
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
    std::lock_guard<std::mutex> job_lock(job.mu);
    sent = job.report;
    job.report.clear_events();
    job.report.clear_step_durations_seconds();
  }
  *req.add_reports() = sent;
  v1::HeartbeatResponse resp;
  grpc::ClientContext ctx;
  SetupContext(&ctx, kRpcDeadline);
  grpc::Status st = stub_->Heartbeat(&ctx, req, &resp);
  if (!st.ok()) {  // Run's next heartbeat reports the error and delivers the report
    std::lock_guard<std::mutex> job_lock(job.mu);
    RestoreUndelivered(sent, &job.report);
    return;
  }
  ApplyJobCommands(resp);
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
  }
  for (auto& job : done) {
    if (job->thread.joinable()) job->thread.join();
  }
}

absl::Status LeaseLoop::FetchBlob(
    const std::string& what, const std::string& sha256, const std::string& path,
    const std::function<std::unique_ptr<grpc::ClientReader<v1::BlobChunk>>(grpc::ClientContext*)>&
        open) {
  std::error_code ec;
  if (fs::exists(path, ec)) {
    auto have = Sha256HexOfFile(path);
    if (have.ok() && *have == sha256) return absl::OkStatus();
  }
  fs::create_directories(fs::path(path).parent_path(), ec);
  const std::string tmp = path + ".part";
  grpc::ClientContext ctx;
  SetupContext(&ctx, kBlobDeadline);
  auto reader = open(&ctx);
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  Sha256 hash;
  v1::BlobChunk chunk;
  while (reader->Read(&chunk)) {
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    hash.Update(chunk.data());
  }
  out.close();
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Annotate(FromGrpcStatus(st), absl::StrCat("fetching ", what));
  const std::string got = hash.HexDigest();
  if (got != sha256) {
    fs::remove(tmp, ec);
    return absl::DataLossError(
        absl::StrCat("fetching ", what, ": sha256 ", got, " does not match ", sha256));
  }
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("storing ", what, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status LeaseLoop::Prepare(ActiveJob& job, JobInputs* in) {
  const v1::Lease& lease = job.lease;
  in->job_id = lease.job_id();
  in->attempt = lease.attempt();
  in->spec = lease.spec();
  in->model_root = options_.model_root;
  const fs::path job_dir = fs::path(options_.cache_dir) / "jobs" / lease.job_id();
  in->work_dir = (job_dir / absl::StrCat("attempt-", lease.attempt())).string();
  std::error_code ec;
  fs::create_directories(in->work_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", in->work_dir, ": ", ec.message()));

  auto fetch_dataset = [&](const std::string& sha, std::string* path) -> absl::Status {
    *path = (fs::path(options_.cache_dir) / "datasets" / (sha + ".jsonl")).string();
    return FetchBlob(absl::StrCat("dataset ", sha.substr(0, 16)), sha, *path,
                     [&](grpc::ClientContext* ctx) {
                       v1::FetchDatasetRequest r;
                       r.set_sha256(sha);
                       return stub_->FetchDataset(ctx, r);
                     });
  };
  RETURN_IF_ERROR(fetch_dataset(lease.training_dataset_sha256(), &in->training_data_path));
  if (!lease.validation_dataset_sha256().empty()) {
    RETURN_IF_ERROR(fetch_dataset(lease.validation_dataset_sha256(), &in->validation_data_path));
  }
  if (lease.has_resume_from() && !lease.resume_from().sha256().empty()) {
    const v1::Checkpoint& cp = lease.resume_from();
    const fs::path dir = job_dir / absl::StrCat("resume-step-", cp.step());
    RETURN_IF_ERROR(FetchBlob(absl::StrCat("checkpoint of step ", cp.step()), cp.sha256(),
                              (dir / "checkpoint.safetensors").string(),
                              [&](grpc::ClientContext* ctx) {
                                v1::FetchCheckpointRequest r;
                                r.set_job_id(lease.job_id());
                                r.set_attempt(lease.attempt());
                                r.set_sha256(cp.sha256());
                                return stub_->FetchCheckpoint(ctx, r);
                              }));
    in->resume_checkpoint_dir = dir.string();
  }
  return absl::OkStatus();
}

absl::Status LeaseLoop::UploadFile(bool checkpoint, const ActiveJob& job, int64_t step, bool merged,
                                   const std::string& bytes) {
  absl::Duration backoff = options_.min_backoff;
  while (true) {
    grpc::ClientContext ctx;
    SetupContext(&ctx, kBlobDeadline);
    v1::UploadBlobResponse resp;
    auto writer =
        checkpoint ? stub_->UploadCheckpoint(&ctx, &resp) : stub_->UploadAdapter(&ctx, &resp);
    v1::UploadBlobRequest header;
    auto* h = header.mutable_header();
    h->set_job_id(job.lease.job_id());
    h->set_attempt(job.lease.attempt());
    h->set_step(step);
    h->set_size_bytes(static_cast<int64_t>(bytes.size()));
    h->set_sha256(Sha256Hex(bytes));
    h->set_merged(merged);
    bool ok = writer->Write(header);
    for (size_t off = 0; ok && off < bytes.size(); off += kChunkBytes) {
      v1::UploadBlobRequest chunk;
      chunk.set_chunk(bytes.substr(off, kChunkBytes));
      ok = writer->Write(chunk);
    }
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    if (st.ok()) return absl::OkStatus();
    if (!Retryable(st.error_code()) || job.dropped) return FromGrpcStatus(st);
    SleepFor(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return FromGrpcStatus(st);
  }
}

void LeaseLoop::Complete(ActiveJob& job, const absl::StatusOr<JobOutputs>& result) {
  v1::CompleteJobRequest req;
  req.set_worker_id(options_.worker_id);
  req.set_job_id(job.lease.job_id());
  req.set_attempt(job.lease.attempt());
  absl::Status outcome = result.status();
  if (result.ok()) {
    req.set_final_state(v1::SUCCEEDED);
  } else if (outcome.code() == absl::StatusCode::kCancelled && job.cancelled) {
    req.set_final_state(v1::CANCELLED);
  } else {
    req.set_final_state(v1::FAILED);
    req.mutable_error()->set_code(static_cast<int>(outcome.code()));
    req.mutable_error()->set_message(std::string(outcome.message()));
    req.mutable_error()->set_blame(BlameFor(outcome.code()));
    req.mutable_error()->set_field(FieldOf(outcome));
    req.mutable_error()->set_line(LineOf(outcome));
  }
  {
    std::lock_guard<std::mutex> lock(job.mu);
    *req.mutable_last_report() = job.report;
    if (result.ok()) {
      *req.mutable_last_report()->mutable_train_stats() = result->train_stats;
      *req.mutable_last_report()->mutable_validation_stats() = result->validation_stats;
      req.mutable_last_report()->set_trainable_parameters(result->trainable_parameters);
      req.mutable_last_report()->set_total_parameters(result->total_parameters);
    }
  }
  absl::Duration backoff = options_.min_backoff;
  while (!job.dropped) {
    grpc::ClientContext ctx;
    SetupContext(&ctx, kRpcDeadline);
    v1::CompleteJobResponse resp;
    grpc::Status st = stub_->CompleteJob(&ctx, req, &resp);
    if (st.ok() || !Retryable(st.error_code())) return;
    SleepFor(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
  }
}

void LeaseLoop::RunJob(std::shared_ptr<ActiveJob> job) {
  Reporter reporter(this, job.get());
  JobInputs inputs;
  absl::StatusOr<JobOutputs> result = [&]() -> absl::StatusOr<JobOutputs> {
    RETURN_IF_ERROR(Prepare(*job, &inputs));
    return runner_(inputs, &reporter, &job->cancelled);
  }();
  if (job->dropped) {
    job->finished = true;
    return;
  }
  if (result.ok()) {
    reporter.OnPhase(train::Phase::kExporting);
    FlushReport(*job);  // the last step and the export's log lines before "adapter uploaded"
    auto upload = [&](const std::string& dir, bool merged) -> absl::Status {
      ASSIGN_OR_RETURN(std::string tar, TarDirectory(dir));
      return UploadFile(/*checkpoint=*/false, *job, 0, merged, tar);
    };
    absl::Status st = upload(result->adapter_dir, false);
    if (st.ok() && !result->merged_dir.empty()) st = upload(result->merged_dir, true);
    if (!st.ok()) result = Annotate(st, "uploading the adapter");
  }
  if (!job->dropped) Complete(*job, result);
  std::error_code ec;
  if (result.ok()) fs::remove_all(inputs.work_dir, ec);
  job->finished = true;
  std::lock_guard<std::mutex> lock(mu_);
  wake_.notify_all();
}

}  // namespace peftd::worker
