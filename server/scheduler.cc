#include "server/scheduler.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/admission_sources.h"
#include "server/job_state.h"

namespace peftd::server {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr int kDefaultEventPageSize = 100;

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  ts.set_seconds(micros / 1000000);
  ts.set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  return ts;
}

absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string RandomJobId() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  return absl::StrFormat("job-%016x", rng());
}

bool IsLeased(v1::JobState s) { return s == v1::RUNNING || s == v1::CANCELLING; }

std::string ShortSha(const std::string& sha) { return sha.substr(0, 12); }

// The newest checkpoint of a job (highest step; a later attempt wins a tie).
const v1::Checkpoint* NewestCheckpoint(const v1::Job& job) {
  const v1::Checkpoint* best = nullptr;
  for (const auto& cp : job.checkpoints()) {
    if (best == nullptr || cp.step() > best->step() ||
        (cp.step() == best->step() && cp.attempt() > best->attempt())) {
      best = &cp;
    }
  }
  return best;
}

std::string ResumeText(const v1::Job& job) {
  const v1::Checkpoint* cp = NewestCheckpoint(job);
  return cp == nullptr ? "from the start"
                       : absl::StrCat("from the checkpoint of step ", cp->step());
}

}  // namespace

Scheduler::Scheduler(storage::JobStore* store, storage::BlobStore* blobs, const Clock* clock,
                     SchedulerOptions options, SchedulerObserver* observer)
    : store_(store),
      blobs_(blobs),
      clock_(clock),
      options_(std::move(options)),
      observer_(observer != nullptr ? observer : &null_observer_) {}

Scheduler::~Scheduler() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(storage::JobStore* store,
                                                             storage::BlobStore* blobs,
                                                             const Clock* clock,
                                                             SchedulerOptions options,
                                                             SchedulerObserver* observer) {
  std::unique_ptr<Scheduler> s(new Scheduler(store, blobs, clock, std::move(options), observer));
  RETURN_IF_ERROR(s->Recover());
  return s;
}

absl::Status Scheduler::Recover() {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(counts_, store_->CountJobsByState());
  ASSIGN_OR_RETURN(std::vector<v1::Job> active, store_->ListActiveJobs());
  const absl::Time now = clock_->Now();
  for (v1::Job& job : active) {
    queue_key_[job.id()] = next_order_++;
    if (job.state() == v1::VALIDATING) {
      // Accepted but not queued when the server stopped: validation is synchronous, so queue it.
      RETURN_IF_ERROR(TransitionLocked(job, v1::QUEUED, "queued after a server restart"));
    } else if (job.state() == v1::QUEUED) {
      queue_.emplace(queue_key_[job.id()], job.id());
    } else if (IsLeased(job.state())) {
      leases_[job.id()] = Lease{job.worker_id(), job.attempt(), now + options_.restart_grace,
                                /*awaiting_reclaim=*/true};
      storage::JobUpdate update;
      update.events.push_back(
          EventLocked(job, v1::JobEvent::INFO,
                      absl::StrCat("server restarted; worker ", job.worker_id(), " has ",
                                   absl::FormatDuration(options_.restart_grace),
                                   " to re-claim attempt ", job.attempt())));
      update.job = job;
      RETURN_IF_ERROR(CommitLocked(job.state(), std::move(update)));
    }
  }
  PublishCountsLocked();
  PublishWorkersLocked();
  return absl::OkStatus();
}

// --- JobService ---------------------------------------------------------------------------------

absl::Status Scheduler::ValidateRequest(const v1::CreateJobRequest& req, v1::JobSpec* spec) {
  ServerAdmissionSources sources(options_.model_root, store_, LiveWorkers(),
                                 options_.local_worker_memory_bytes);
  ASSIGN_OR_RETURN(*spec, AdmitJob(req, sources));
  return absl::OkStatus();
}

std::vector<LiveWorker> Scheduler::LiveWorkers() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LiveWorker> live;
  for (const auto& [id, w] : workers_) {
    if (!w.lost) live.push_back({id, AdvertisedMemory(w.registration)});
  }
  return live;
}

absl::StatusOr<v1::Job> Scheduler::CreateJob(const v1::CreateJobRequest& req) {
  v1::JobSpec spec;
  RETURN_IF_ERROR(ValidateRequest(req, &spec));
  std::lock_guard<std::mutex> lock(mu_);
  v1::Job job;
  job.set_id(options_.new_job_id ? options_.new_job_id() : RandomJobId());
  job.set_request_id(req.request_id());
  job.set_display_name(req.display_name());
  *job.mutable_labels() = req.labels();
  *job.mutable_spec() = spec;
  job.set_state(v1::VALIDATING);
  job.set_attempt(1);
  *job.mutable_create_time() = ToProto(clock_->Now());
  RETURN_IF_ERROR(CheckTransition(v1::VALIDATING, v1::QUEUED));
  job.set_state(v1::QUEUED);
  std::vector<v1::JobEvent> events = {
      EventLocked(job, v1::JobEvent::INFO,
                  absl::StrCat("queued: ", v1::Method_Name(spec.method()),
                               spec.token_gate().enabled() ? " with the token gate" : "", " on ",
                               spec.base_model(), ", training data ", spec.training_dataset_id()))};
  bool existed = false;
  ASSIGN_OR_RETURN(v1::Job stored, store_->InsertJob(job, std::move(events), &existed));
  if (existed) {
    if (!google::protobuf::util::MessageDifferencer::Equals(stored.spec(), spec)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "request_id: '", req.request_id(), "' was already used for job ", stored.id(),
          " with a different spec; use a new request_id to submit another job"));
    }
    return stored;
  }
  queue_key_[job.id()] = next_order_++;
  queue_.emplace(queue_key_[job.id()], job.id());
  ++counts_[v1::QUEUED];
  observer_->JobSubmitted(spec.method());
  PublishCountsLocked();
  ++event_generation_;
  events_cv_.notify_all();
  return job;
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& job_id) {
  return store_->GetJob(job_id);
}

absl::StatusOr<v1::ListJobsResponse> Scheduler::ListJobs(const v1::ListJobsRequest& req) {
  if (req.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be >= 0 (0 = default ", kDefaultPageSize, ")"));
  }
  storage::JobQuery q;
  q.page_size = req.page_size() == 0 ? kDefaultPageSize : std::min(req.page_size(), kMaxPageSize);
  q.page_token = req.page_token();
  for (int s : req.states()) {
    if (s == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(s)) {
      return absl::InvalidArgumentError(absl::StrCat("states: ", s, " is not a job state"));
    }
    q.states.push_back(static_cast<v1::JobState>(s));
  }
  q.labels.insert(req.labels().begin(), req.labels().end());
  ASSIGN_OR_RETURN(storage::JobPage page, store_->ListJobs(q));
  v1::ListJobsResponse resp;
  for (auto& job : page.jobs) *resp.add_jobs() = std::move(job);
  resp.set_next_page_token(page.next_page_token);
  return resp;
}

absl::StatusOr<v1::Job> Scheduler::CancelJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (job.state() == v1::QUEUED || job.state() == v1::VALIDATING) {
    RETURN_IF_ERROR(TransitionLocked(job, v1::CANCELLED, "cancelled while queued"));
  } else if (job.state() == v1::RUNNING) {
    RETURN_IF_ERROR(TransitionLocked(
        job, v1::CANCELLING,
        absl::StrCat("cancel requested; worker ", job.worker_id(), " stops within one step")));
  }
  return job;
}

absl::StatusOr<std::vector<v1::JobEvent>> Scheduler::ListJobEvents(const std::string& job_id,
                                                                   int64_t after_event_id,
                                                                   int page_size) {
  if (page_size < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
  RETURN_IF_ERROR(store_->GetJob(job_id).status());
  const int limit = page_size == 0 ? kDefaultEventPageSize : std::min(page_size, kMaxPageSize);
  return store_->ListEvents(job_id, after_event_id, limit);
}

absl::StatusOr<std::vector<v1::Checkpoint>> Scheduler::ListCheckpoints(const std::string& job_id) {
  RETURN_IF_ERROR(store_->GetJob(job_id).status());
  return store_->ListCheckpoints(job_id);
}

void Scheduler::WaitForEvents(const std::string& job_id, int64_t after_event_id,
                              absl::Duration max_wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (shutdown_) return;
  const int64_t generation = event_generation_;
  auto events = store_->ListEvents(job_id, after_event_id, 1);
  if (!events.ok() || !events->empty()) return;
  auto job = store_->GetJob(job_id);
  if (!job.ok() || IsFinal(job->state())) return;
  events_cv_.wait_for(lock, absl::ToChronoNanoseconds(max_wait),
                      [&] { return shutdown_ || event_generation_ != generation; });
}

absl::StatusOr<v1::Dataset> Scheduler::RecordDataset(const v1::Dataset& dataset) {
  return store_->InsertDataset(dataset);
}

absl::StatusOr<std::vector<v1::Dataset>> Scheduler::ListDatasets() {
  return store_->ListDatasets();
}

absl::StatusOr<storage::Artifact> Scheduler::GetArtifact(const std::string& job_id, bool merged) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (job.state() != v1::SUCCEEDED) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " is ", v1::JobState_Name(job.state()),
                     "; its adapter can be downloaded once the job SUCCEEDED"));
  }
  ASSIGN_OR_RETURN(auto artifact, store_->GetArtifact(job_id, merged ? "merged" : "adapter"));
  if (!artifact) {
    return absl::NotFoundError(
        merged ? absl::StrCat("job ", job_id,
                              " has no merged model; submit with export_merged to get one")
               : absl::StrCat("job ", job_id, " has no adapter"));
  }
  return *artifact;
}

// --- WorkerService ------------------------------------------------------------------------------

absl::StatusOr<v1::RegisterResponse> Scheduler::Register(const v1::RegisterRequest& req) {
  if (req.worker_id().empty()) return absl::InvalidArgumentError("worker_id: required");
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  workers_[req.worker_id()] = Worker{req, now, false};
  RETURN_IF_ERROR(store_->UpsertWorker(req, now));
  const std::set<std::string> running(req.running_job_ids().begin(), req.running_job_ids().end());
  std::vector<std::string> held;
  for (const auto& [job_id, lease] : leases_) {
    if (lease.worker_id == req.worker_id()) held.push_back(job_id);
  }
  for (const std::string& job_id : held) {
    Lease& lease = leases_[job_id];
    if (running.count(job_id)) {
      const bool was_waiting = lease.awaiting_reclaim;
      lease.awaiting_reclaim = false;
      lease.expires = now + options_.lease_timeout;
      if (was_waiting) {
        ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
        storage::JobUpdate update;
        update.events.push_back(EventLocked(
            job, v1::JobEvent::INFO,
            absl::StrCat("worker ", req.worker_id(), " re-claimed attempt ", lease.attempt)));
        update.job = std::move(job);
        RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
      }
    } else {
      RETURN_IF_ERROR(LoseLeaseLocked(
          job_id, absl::StrCat("worker ", req.worker_id(), " restarted without it")));
    }
  }
  PublishWorkersLocked();
  v1::RegisterResponse resp;
  resp.set_heartbeat_interval_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  resp.set_lease_timeout_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease_timeout)));
  return resp;
}

absl::StatusOr<v1::HeartbeatResponse> Scheduler::Heartbeat(const v1::HeartbeatRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  auto worker = workers_.find(req.worker_id());
  if (worker == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("worker '", req.worker_id(), "' is not registered; call Register first"));
  }
  const absl::Time now = clock_->Now();
  const bool was_lost = worker->second.lost;
  worker->second.last_seen = now;
  worker->second.lost = false;
  v1::HeartbeatResponse resp;
  for (const v1::ProgressReport& report : req.reports()) {
    auto lease = leases_.find(report.job_id());
    if (lease == leases_.end() || lease->second.attempt != report.attempt() ||
        lease->second.worker_id != req.worker_id()) {
      resp.add_drop_job_ids(report.job_id());
      continue;
    }
    lease->second.expires = now + options_.lease_timeout;
    lease->second.awaiting_reclaim = false;
    ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(report.job_id()));
    storage::JobUpdate update;
    RETURN_IF_ERROR(RecordReportLocked(job, report, &update.events));
    if (job.state() == v1::CANCELLING) resp.add_cancel_job_ids(job.id());
    update.job = std::move(job);
    RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
  }
  for (int i = 0; i < req.free_slots() && !queue_.empty(); ++i) {
    ASSIGN_OR_RETURN(v1::Lease lease, LeaseNextLocked(req.worker_id()));
    *resp.add_leases() = std::move(lease);
  }
  if (was_lost || resp.leases_size() > 0) PublishWorkersLocked();
  return resp;
}

absl::StatusOr<v1::Lease> Scheduler::LeaseNextLocked(const std::string& worker_id) {
  const std::string job_id = queue_.begin()->second;
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  const absl::Time now = clock_->Now();
  v1::Lease lease;
  lease.set_job_id(job.id());
  lease.set_attempt(job.attempt());
  *lease.mutable_spec() = job.spec();
  ASSIGN_OR_RETURN(v1::Dataset train, store_->GetDataset(job.spec().training_dataset_id()));
  lease.set_training_dataset_sha256(train.sha256());
  if (!job.spec().validation_dataset_id().empty()) {
    ASSIGN_OR_RETURN(v1::Dataset val, store_->GetDataset(job.spec().validation_dataset_id()));
    lease.set_validation_dataset_sha256(val.sha256());
  }
  if (const v1::Checkpoint* cp = NewestCheckpoint(job)) *lease.mutable_resume_from() = *cp;
  if (job.attempt() == 1)
    observer_->QueueWait(absl::ToDoubleSeconds(now - FromProto(job.create_time())));
  job.set_worker_id(worker_id);
  job.set_phase(v1::LOADING_MODEL);
  if (!job.has_start_time()) *job.mutable_start_time() = ToProto(now);
  RETURN_IF_ERROR(TransitionLocked(job, v1::RUNNING,
                                   absl::StrCat("attempt ", job.attempt(), " leased to worker ",
                                                worker_id, ", starting ", ResumeText(job))));
  leases_[job_id] = Lease{worker_id, job.attempt(), now + options_.lease_timeout, false};
  return lease;
}

absl::Status Scheduler::CheckLeaseLocked(const std::string& job_id, int attempt) const {
  auto lease = leases_.find(job_id);
  if (lease != leases_.end() && lease->second.attempt == attempt) return absl::OkStatus();
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " attempt ", attempt,
                                                    " is not current (the job is ",
                                                    v1::JobState_Name(job.state()), " at attempt ",
                                                    job.attempt(), "); stop it without reporting"));
}

absl::Status Scheduler::CheckLease(const std::string& job_id, int attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  return CheckLeaseLocked(job_id, attempt);
}

absl::Status Scheduler::RecordCheckpoint(const std::string& job_id, int attempt, int64_t step,
                                         const std::string& sha256, int64_t size_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeaseLocked(job_id, attempt));
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  v1::Checkpoint cp;
  cp.set_step(step);
  cp.set_attempt(attempt);
  cp.set_sha256(sha256);
  cp.set_size_bytes(size_bytes);
  *cp.mutable_create_time() = ToProto(clock_->Now());
  *job.add_checkpoints() = cp;
  leases_[job_id].expires = clock_->Now() + options_.lease_timeout;  // an upload is a sign of life
  storage::JobUpdate update;
  // The checkpoint is what the job is doing now, whatever phase the last heartbeat carried (the
  // worker flushes its report before uploading, so the step's progress event comes first).
  v1::JobEvent event =
      EventLocked(job, v1::JobEvent::INFO,
                  absl::StrCat("checkpoint of step ", step, " saved (", size_bytes, " bytes)"));
  event.set_phase(v1::CHECKPOINTING);
  update.events.push_back(std::move(event));
  update.checkpoint = cp;
  update.job = std::move(job);
  return CommitSameStateLocked(std::move(update));
}

absl::StatusOr<v1::Checkpoint> Scheduler::FindCheckpoint(const std::string& job_id,
                                                         const std::string& sha256) {
  ASSIGN_OR_RETURN(auto checkpoints, store_->ListCheckpoints(job_id));
  for (const auto& cp : checkpoints) {
    if (cp.sha256() == sha256) return cp;
  }
  return absl::NotFoundError(
      absl::StrCat("job ", job_id, " has no checkpoint with sha256 ", ShortSha(sha256)));
}

absl::StatusOr<bool> Scheduler::IsDataset(const std::string& sha256) {
  ASSIGN_OR_RETURN(auto ds, store_->FindDatasetBySha256(sha256));
  return ds.has_value();
}

absl::Status Scheduler::RecordAdapter(const std::string& job_id, int attempt, bool merged,
                                      const std::string& sha256, int64_t size_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeaseLocked(job_id, attempt));
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (!merged) {
    job.set_adapter_sha256(sha256);
    job.set_adapter_size_bytes(size_bytes);
  }
  leases_[job_id].expires = clock_->Now() + options_.lease_timeout;
  storage::JobUpdate update;
  v1::JobEvent event =
      EventLocked(job, v1::JobEvent::INFO,
                  absl::StrCat(merged ? "merged model" : "adapter", " uploaded (", size_bytes,
                               " bytes, sha256 ", ShortSha(sha256), ")"));
  event.set_phase(v1::EXPORTING);  // as the checkpoint's: what the job does now
  update.events.push_back(std::move(event));
  update.artifact = storage::Artifact{job_id, merged ? "merged" : "adapter", sha256, size_bytes};
  update.job = std::move(job);
  return CommitSameStateLocked(std::move(update));
}

absl::Status Scheduler::CompleteJob(const v1::CompleteJobRequest& req) {
  const v1::JobState final_state = req.final_state();
  if (final_state != v1::SUCCEEDED && final_state != v1::FAILED && final_state != v1::CANCELLED) {
    return absl::InvalidArgumentError("final_state: must be SUCCEEDED, FAILED or CANCELLED");
  }
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(req.job_id()));
  if (IsFinal(job.state()) && job.attempt() == req.attempt() && job.state() == final_state) {
    return absl::OkStatus();  // a retried report whose first reply was lost
  }
  RETURN_IF_ERROR(CheckLeaseLocked(req.job_id(), req.attempt()));
  if (leases_[req.job_id()].worker_id != req.worker_id()) {
    return absl::FailedPreconditionError(absl::StrCat("job ", req.job_id(), " is leased to worker ",
                                                      leases_[req.job_id()].worker_id, ", not ",
                                                      req.worker_id()));
  }
  storage::JobUpdate extra;
  if (req.has_last_report())
    RETURN_IF_ERROR(RecordReportLocked(job, req.last_report(), &extra.events));
  switch (final_state) {
    case v1::SUCCEEDED:
      if (job.adapter_sha256().empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("job ", job.id(), " attempt ", req.attempt(),
                         ": no adapter was uploaded; call UploadAdapter before CompleteJob"));
      }
      return TransitionLocked(job, v1::SUCCEEDED,
                              absl::StrCat("succeeded after ", job.progress().step(), " steps"),
                              v1::JobEvent::INFO, std::move(extra));
    case v1::FAILED: {
      v1::JobError error = req.error();
      if (error.code() == 0) error.set_code(static_cast<int>(absl::StatusCode::kUnknown));
      if (error.blame() == v1::JobError::BLAME_UNSPECIFIED) error.set_blame(v1::JobError::SYSTEM);
      if (error.message().empty()) error.set_message("the worker reported a failure");
      *job.mutable_error() = error;
      return TransitionLocked(job, v1::FAILED, absl::StrCat("failed: ", error.message()),
                              v1::JobEvent::ERROR, std::move(extra));
    }
    default:
      if (job.state() == v1::RUNNING) {
        RETURN_IF_ERROR(TransitionLocked(job, v1::CANCELLING, "the worker stopped the job",
                                         v1::JobEvent::INFO, std::move(extra)));
        extra = {};
      }
      return TransitionLocked(job, v1::CANCELLED, "cancelled", v1::JobEvent::INFO,
                              std::move(extra));
  }
}

absl::Status Scheduler::RecordReportLocked(v1::Job& job, const v1::ProgressReport& report,
                                           std::vector<v1::JobEvent>* events) {
  const bool phase_changed =
      report.phase() != v1::JOB_PHASE_UNSPECIFIED && report.phase() != job.phase();
  if (report.phase() != v1::JOB_PHASE_UNSPECIFIED) job.set_phase(report.phase());
  const bool stepped =
      report.has_progress() && (report.progress().step() != job.progress().step() ||
                                report.progress().has_eval() != job.progress().has_eval());
  if (report.has_progress()) *job.mutable_progress() = report.progress();
  if (report.has_train_stats()) *job.mutable_train_stats() = report.train_stats();
  if (report.has_validation_stats()) *job.mutable_validation_stats() = report.validation_stats();
  if (report.trainable_parameters() > 0)
    job.set_trainable_parameters(report.trainable_parameters());
  if (report.total_parameters() > 0) job.set_total_parameters(report.total_parameters());
  for (const v1::JobEvent& e : report.events()) {
    v1::JobEvent event = EventLocked(
        job, e.level() == v1::JobEvent::LEVEL_UNSPECIFIED ? v1::JobEvent::INFO : e.level(),
        e.message());
    // The phase the worker logged it in; a heartbeat can carry events of several phases.
    if (e.phase() != v1::JOB_PHASE_UNSPECIFIED) event.set_phase(e.phase());
    events->push_back(std::move(event));
  }
  if (stepped || phase_changed) {
    const v1::JobProgress& p = job.progress();
    v1::JobEvent event =
        EventLocked(job, v1::JobEvent::DEBUG,
                    absl::StrFormat("%s step %d/%d loss %.4f", v1::JobPhase_Name(job.phase()),
                                    p.step(), p.total_steps(), p.train_loss()));
    *event.mutable_progress() = p;
    events->push_back(std::move(event));
  }
  if (report.has_progress()) observer_->JobProgress(job.id(), job.spec().method(), job.progress());
  if (report.step_durations_seconds_size() > 0) {
    observer_->StepDurations(std::vector<double>(report.step_durations_seconds().begin(),
                                                 report.step_durations_seconds().end()));
  }
  return absl::OkStatus();
}

// --- Leases and time ----------------------------------------------------------------------------

absl::Status Scheduler::LoseLeaseLocked(const std::string& job_id, const std::string& why) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  leases_.erase(job_id);
  if (job.state() == v1::CANCELLING) {
    return TransitionLocked(job, v1::CANCELLED, absl::StrCat("cancelled (", why, ")"));
  }
  if (job.state() != v1::RUNNING) return absl::OkStatus();
  const int attempt = job.attempt();
  if (attempt >= job.spec().max_attempts()) {
    v1::JobError* error = job.mutable_error();
    error->set_code(static_cast<int>(absl::StatusCode::kUnavailable));
    error->set_blame(v1::JobError::SYSTEM);
    error->set_message(absl::StrCat("lost its worker ", attempt, " times (max_attempts ",
                                    job.spec().max_attempts(), "; last: ", why,
                                    "); resubmit, or raise max_attempts"));
    return TransitionLocked(job, v1::FAILED, absl::StrCat("failed: ", error->message()),
                            v1::JobEvent::ERROR);
  }
  job.set_attempt(attempt + 1);
  // Steps past the newest checkpoint die with the attempt: the next one resumes there, so the
  // job's progress (and its progress events) never show a step that no attempt will keep.
  const v1::Checkpoint* resume = NewestCheckpoint(job);
  job.mutable_progress()->set_step(resume == nullptr ? 0 : resume->step());
  observer_->JobRemoved(job_id);  // the lost attempt's live series must not linger
  return TransitionLocked(job, v1::QUEUED,
                          absl::StrCat("attempt ", attempt, " lost (", why, "); queued as attempt ",
                                       attempt + 1, ", resuming ", ResumeText(job)),
                          v1::JobEvent::WARNING);
}

void Scheduler::Tick() {
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, std::string>> expired;
  for (const auto& [job_id, lease] : leases_) {
    if (lease.expires > now) continue;
    expired.emplace_back(
        job_id,
        lease.awaiting_reclaim
            ? absl::StrCat("worker ", lease.worker_id, " did not re-claim it within ",
                           absl::FormatDuration(options_.restart_grace), " of a server restart")
            : absl::StrCat("worker ", lease.worker_id, " sent no heartbeat for ",
                           absl::FormatDuration(options_.lease_timeout)));
  }
  for (const auto& [job_id, why] : expired) {
    absl::Status st = LoseLeaseLocked(job_id, why);
    (void)st;  // the store failing here is retried at the next tick (the lease stays expired)
  }
  bool changed = !expired.empty();
  for (auto& [id, worker] : workers_) {
    if (!worker.lost && worker.last_seen + options_.lease_timeout <= now) {
      worker.lost = true;
      changed = true;
    }
  }
  if (changed) PublishWorkersLocked();
}

void Scheduler::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  events_cv_.notify_all();
}

bool Scheduler::shutting_down() {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_;
}

// --- Writing ------------------------------------------------------------------------------------

v1::JobEvent Scheduler::EventLocked(const v1::Job& job, v1::JobEvent::Level level,
                                    const std::string& message) const {
  v1::JobEvent e;
  e.set_job_id(job.id());
  *e.mutable_time() = ToProto(clock_->Now());
  e.set_level(level);
  e.set_message(message);
  e.set_state(job.state());
  e.set_phase(job.phase());
  return e;
}

absl::Status Scheduler::TransitionLocked(v1::Job& job, v1::JobState to, const std::string& message,
                                         v1::JobEvent::Level level, storage::JobUpdate extra) {
  const v1::JobState from = job.state();
  RETURN_IF_ERROR(CheckTransition(from, to));
  job.set_state(to);
  if (!IsLeased(to)) {
    job.clear_worker_id();
    job.set_phase(v1::JOB_PHASE_UNSPECIFIED);
  }
  if (IsFinal(to)) *job.mutable_end_time() = ToProto(clock_->Now());
  extra.events.push_back(EventLocked(job, level, message));
  extra.job = job;
  return CommitLocked(from, std::move(extra));
}

absl::Status Scheduler::CommitSameStateLocked(storage::JobUpdate update) {
  // Not CommitLocked(update.job.state(), std::move(update)): argument evaluation order would let
  // the move happen first.
  const v1::JobState state = update.job.state();
  return CommitLocked(state, std::move(update));
}

absl::Status Scheduler::CommitLocked(v1::JobState from, storage::JobUpdate update) {
  ASSIGN_OR_RETURN(auto events, store_->Apply(update));
  const v1::Job& job = update.job;
  const v1::JobState to = job.state();
  if (from != to) {
    --counts_[from];
    ++counts_[to];
    if (from == v1::QUEUED) queue_.erase({queue_key_[job.id()], job.id()});
    if (to == v1::QUEUED) queue_.emplace(queue_key_[job.id()], job.id());
    if (!IsLeased(to)) leases_.erase(job.id());
    if (IsFinal(to)) {
      queue_key_.erase(job.id());
      observer_->JobFinished(job.spec().method(), to);
      observer_->JobRemoved(job.id());
    }
    PublishCountsLocked();
    PublishWorkersLocked();
  }
  if (!events.empty()) {
    ++event_generation_;
    events_cv_.notify_all();
  }
  return absl::OkStatus();
}

void Scheduler::PublishCountsLocked() {
  std::map<v1::JobState, int64_t> counts;
  for (int s = v1::JobState_MIN; s <= v1::JobState_MAX; ++s) {
    if (s == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(s)) continue;
    auto it = counts_.find(static_cast<v1::JobState>(s));
    counts[static_cast<v1::JobState>(s)] = it == counts_.end() ? 0 : it->second;
  }
  observer_->JobsByState(counts);
}

void Scheduler::PublishWorkersLocked() {
  std::map<std::string, int64_t> counts = {{"idle", 0}, {"busy", 0}, {"lost", 0}};
  std::set<std::string> busy;
  for (const auto& [job_id, lease] : leases_) busy.insert(lease.worker_id);
  for (const auto& [id, worker] : workers_) {
    ++counts[worker.lost ? "lost" : (busy.count(id) ? "busy" : "idle")];
  }
  observer_->Workers(counts);
}

}  // namespace peftd::server
