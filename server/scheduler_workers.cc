// Scheduler: the WorkerService side (register, heartbeats and leases, uploads, completion).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "server/job_state.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"
#include "spdlog/spdlog.h"

namespace peftd::server {

using internal::FromProto;
using internal::ResolveInitSource;
using internal::ResumeText;
using internal::ShortSha;
using internal::ToProto;

absl::StatusOr<v1::RegisterResponse> Scheduler::Register(const v1::RegisterRequest& req) {
  if (req.worker_id().empty()) return absl::InvalidArgumentError("worker_id: required");
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  RETURN_IF_ERROR(store_->UpsertWorker(req, now));
  workers_[req.worker_id()] = Worker{req, now, false};
  const std::set<std::string> running(req.running_job_ids().begin(), req.running_job_ids().end());
  std::vector<std::string> held;
  for (const auto& [job_id, lease] : leases_) {
    if (lease.worker_id == req.worker_id()) held.push_back(job_id);
  }
  // Each lease changes in memory only once the store has what explains it, so a refused write
  // leaves the lease as it was and the worker's next Register tries again.
  for (const std::string& job_id : held) {
    Lease& lease = leases_[job_id];
    if (!running.count(job_id)) {
      // After a server restart the worker may have been restarted with it (local workers die
      // with their server): that costs the job nothing. Otherwise the worker process died.
      RETURN_IF_ERROR(LoseLeaseLocked(
          job_id,
          AttemptLoss{lease.awaiting_reclaim ? LossCause::kServerRestarted : LossCause::kWorkerDied,
                      absl::StrCat("worker ", req.worker_id(), " restarted without it")}));
      continue;
    }
    if (lease.awaiting_reclaim) {
      ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
      storage::JobUpdate update;
      update.events.push_back(EventLocked(
          job, v1::JobEvent::INFO,
          absl::StrCat("worker ", req.worker_id(), " re-claimed attempt ", lease.attempt)));
      update.job = std::move(job);
      RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
      lease.awaiting_reclaim = false;
    }
    lease.expires = now + options_.lease_timeout;
  }
  // A rank > 0 it ran and no longer lists: the process restarted, so the gang lost a member.
  std::vector<std::pair<std::string, AttemptLoss>> lost_ranks;
  for (const auto& [job_id, gang] : gangs_) {
    for (size_t i = 0; i < gang.ranks.size(); ++i) {
      const GangRank& rank = gang.ranks[i];
      if (rank.worker_id != req.worker_id() || !rank.delivered || running.count(job_id)) continue;
      lost_ranks.emplace_back(
          job_id,
          AttemptLoss{LossCause::kWorkerDied, absl::StrCat("worker ", req.worker_id(), " of rank ",
                                                           i + 1, " restarted without it")});
      break;
    }
  }
  for (const auto& [job_id, loss] : lost_ranks) RETURN_IF_ERROR(LoseLeaseLocked(job_id, loss));
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
    if (report.rank() > 0) {  // a gang's other rank: per-rank figures only
      if (!IsCurrentRankLocked(req.worker_id(), report)) {
        resp.add_drop_job_ids(report.job_id());
        continue;
      }
      ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(report.job_id()));
      RETURN_IF_ERROR(RecordGangReportLocked(req.worker_id(), report, job));
      if (job.state() == v1::CANCELLING) resp.add_cancel_job_ids(job.id());
      storage::JobUpdate update;
      update.job = std::move(job);
      RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
      continue;
    }
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
    RETURN_IF_ERROR(RecordGangReportLocked(req.worker_id(), report, job));
    if (job.state() == v1::CANCELLING) resp.add_cancel_job_ids(job.id());
    update.job = std::move(job);
    RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
  }
  // Gang ranks placed on this worker take their slots first, delivered or still waiting.
  const int free = req.free_slots() - DeliverGangRanksLocked(req.worker_id(), &resp);
  LeaseQueuedLocked(req.worker_id(), free, &resp);
  if (was_lost || resp.leases_size() > 0) PublishWorkersLocked();
  return resp;
}

void Scheduler::LeaseQueuedLocked(const std::string& worker_id, int free,
                                  v1::HeartbeatResponse* resp) {
  std::set<std::string> skip;  // gangs wider than the live workers: they hold nothing back
  while (true) {
    const std::optional<std::string> next = NextLeasableLocked(skip);
    if (!next) break;
    auto gang = gang_world_.find(*next);
    if (gang == gang_world_.end()) {
      if (free <= 0) break;
      absl::StatusOr<v1::Lease> lease = LeaseLocked(worker_id, *next);
      if (!lease.ok()) {
        // The reports are stored; failing the heartbeat would make the worker send them
        // again. The job stays queued for the next heartbeat.
        spdlog::warn("leasing to worker {} failed, retried at its next heartbeat: {}", worker_id,
                     std::string(lease.status().message()));
        break;
      }
      *resp->add_leases() = *std::move(lease);
      --free;
      continue;
    }
    absl::StatusOr<GangPlan> plan = TryLeaseGangLocked(*next, gang->second, worker_id, &free, resp);
    if (!plan.ok()) {
      spdlog::warn("placing gang {} failed, retried at the next heartbeat: {}", *next,
                   std::string(plan.status().message()));
      break;
    }
    if (plan->placed()) continue;
    if (plan->never_fits) {
      skip.insert(*next);
      continue;
    }
    // The queue head reserves: nothing behind it takes the slots it waits for, so a stream of
    // small jobs cannot starve it and two gangs never hold half each.
    break;
  }
  workers_[worker_id].free_slots = std::max(0, free);
}

std::optional<std::string> Scheduler::NextLeasableLocked(const std::set<std::string>& skip) const {
  std::map<std::string, int> leased;  // sweep id -> its children holding a lease
  if (!sweep_concurrency_.empty()) {
    for (const auto& [job_id, lease] : leases_) {
      if (auto s = job_sweep_.find(job_id); s != job_sweep_.end()) ++leased[s->second];
    }
  }
  for (const auto& [order, job_id] : queue_) {
    if (skip.count(job_id)) continue;
    auto sweep = job_sweep_.find(job_id);
    if (sweep != job_sweep_.end()) {
      auto limit = sweep_concurrency_.find(sweep->second);
      if (limit != sweep_concurrency_.end() && leased[sweep->second] >= limit->second) continue;
    }
    return job_id;
  }
  return std::nullopt;
}

absl::StatusOr<v1::Lease> Scheduler::LeaseLocked(const std::string& worker_id,
                                                 const std::string& job_id) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  const absl::Time now = clock_->Now();
  ASSIGN_OR_RETURN(v1::Lease lease, BuildLeaseLocked(job));
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

absl::StatusOr<v1::Lease> Scheduler::BuildLeaseLocked(const v1::Job& job) {
  v1::Lease lease;
  lease.set_job_id(job.id());
  lease.set_attempt(job.attempt());
  *lease.mutable_spec() = job.spec();
  ASSIGN_OR_RETURN(v1::Dataset train, store_->GetDataset(job.spec().training_dataset_id()));
  lease.set_training_dataset_sha256(train.sha256());
  lease.set_training_dataset_filename(train.filename());
  if (!job.spec().validation_dataset_id().empty()) {
    ASSIGN_OR_RETURN(v1::Dataset val, store_->GetDataset(job.spec().validation_dataset_id()));
    lease.set_validation_dataset_sha256(val.sha256());
    lease.set_validation_dataset_filename(val.filename());
  }
  if (const v1::Checkpoint* cp = NewestCheckpoint(job)) *lease.mutable_resume_from() = *cp;
  if (job.spec().has_init_from()) {
    ASSIGN_OR_RETURN(*lease.mutable_init_from(),
                     ResolveInitSource(*store_, job.spec().init_from()));
  }
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
  // keep_checkpoints: the oldest records go (their blobs are reclaimed by the blob sweep once no
  // row refers to them). The newest, which a requeue resumes from, always stays.
  update.drop_checkpoints = TrimCheckpoints(job, job.spec().keep_checkpoints());
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
  // The weights the job starts from (init_from) are fetched the same way.
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (job.spec().has_init_from()) {
    ASSIGN_OR_RETURN(v1::InitSource init, ResolveInitSource(*store_, job.spec().init_from()));
    if (init.sha256() == sha256) {
      v1::Checkpoint cp;
      cp.set_step(init.step());
      cp.set_sha256(init.sha256());
      return cp;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("job ", job_id, " has no checkpoint with sha256 ", ShortSha(sha256)));
}

absl::StatusOr<bool> Scheduler::IsDataset(const std::string& sha256) {
  ASSIGN_OR_RETURN(auto ds, store_->FindDatasetBySha256(sha256));
  return ds.has_value();
}

absl::Status Scheduler::RecordAdapter(const std::string& job_id, int attempt, bool merged,
                                      const std::string& sha256, int64_t size_bytes, int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeaseLocked(job_id, attempt));
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  leases_[job_id].expires = clock_->Now() + options_.lease_timeout;
  if (step > 0 && !merged) {
    // A checkpoint's adapter: served by `download --step`, dropped with its checkpoint.
    storage::JobUpdate update;
    update.events.push_back(
        EventLocked(job, v1::JobEvent::DEBUG,
                    absl::StrCat("adapter of the checkpoint of step ", step, " uploaded (",
                                 size_bytes, " bytes, sha256 ", ShortSha(sha256), ")")));
    update.artifact = storage::Artifact{job_id, storage::CheckpointAdapterKind(step), sha256,
                                        size_bytes, attempt};
    update.job = std::move(job);
    return CommitSameStateLocked(std::move(update));
  }
  if (!merged) {
    job.set_adapter_sha256(sha256);
    job.set_adapter_size_bytes(size_bytes);
  }
  storage::JobUpdate update;
  v1::JobEvent event =
      EventLocked(job, v1::JobEvent::INFO,
                  absl::StrCat(merged ? "merged model" : "adapter", " uploaded (", size_bytes,
                               " bytes, sha256 ", ShortSha(sha256), ")"));
  event.set_phase(v1::EXPORTING);  // as the checkpoint's: what the job does now
  update.events.push_back(std::move(event));
  update.artifact =
      storage::Artifact{job_id, merged ? "merged" : "adapter", sha256, size_bytes, attempt};
  update.job = std::move(job);
  return CommitSameStateLocked(std::move(update));
}

absl::Status Scheduler::CompleteJob(const v1::CompleteJobRequest& req) {
  const v1::JobState final_state = req.final_state();
  if (final_state != v1::SUCCEEDED && final_state != v1::FAILED && final_state != v1::CANCELLED) {
    return absl::InvalidArgumentError("final_state: must be SUCCEEDED, FAILED or CANCELLED");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (req.last_report().rank() > 0) return CompleteRankLocked(req);
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
    case v1::SUCCEEDED: {
      // Only an adapter this attempt uploaded counts: a requeue discards the lost attempt's.
      ASSIGN_OR_RETURN(std::optional<storage::Artifact> adapter,
                       store_->GetArtifact(job.id(), "adapter"));
      if (job.adapter_sha256().empty() || !adapter || adapter->attempt != req.attempt()) {
        return absl::FailedPreconditionError(
            absl::StrCat("job ", job.id(), " attempt ", req.attempt(),
                         ": this attempt uploaded no adapter; call UploadAdapter before "
                         "CompleteJob"));
      }
      return TransitionLocked(job, v1::SUCCEEDED,
                              absl::StrCat("succeeded after ", job.progress().step(), " steps"),
                              v1::JobEvent::INFO, std::move(extra));
    }
    case v1::FAILED: {
      if (gang_world_.count(job.id()) && job.state() == v1::RUNNING &&
          req.error().blame() != v1::JobError::USER) {
        // Rank 0 of a gang failing for the system (a collective that timed out because another
        // rank died): the gang's attempt is fenced and requeued, as for a lost rank.
        return LoseLeaseLocked(job.id(),
                               AttemptLoss{LossCause::kWorkerSilent,
                                           absl::StrCat("rank 0 on worker ", req.worker_id(),
                                                        " failed: ", req.error().message())});
      }
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
  if (report.has_progress()) {
    // The per-rank figures of a gang come from every rank's reports, not rank 0's progress.
    const auto steps = job.progress().rank_step_seconds();
    const auto allreduce = job.progress().rank_allreduce_seconds();
    *job.mutable_progress() = report.progress();
    *job.mutable_progress()->mutable_rank_step_seconds() = steps;
    *job.mutable_progress()->mutable_rank_allreduce_seconds() = allreduce;
  }
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

}  // namespace peftd::server
