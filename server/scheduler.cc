#include "server/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "server/job_state.h"
#include "server/scheduler_internal.h"
#include "spdlog/spdlog.h"

namespace peftd::server {

using internal::IsLeased;
using internal::ToProto;

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
    if (job.spec().workers() > 1) gang_world_[job.id()] = job.spec().workers();
    if (!job.sweep_id().empty()) {
      job_sweep_[job.id()] = job.sweep_id();
      if (sweep_concurrency_.count(job.sweep_id()) == 0) {
        ASSIGN_OR_RETURN(v1::Sweep sweep, store_->GetSweep(job.sweep_id()));
        if (sweep.spec().max_concurrency() > 0) {
          sweep_concurrency_[sweep.id()] = sweep.spec().max_concurrency();
        }
      }
    }
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

// --- Leases and time ----------------------------------------------------------------------------

absl::Status Scheduler::LoseLeaseLocked(const std::string& job_id, const AttemptLoss& loss) {
  // The in-memory lease goes only when the store has taken the new state (CommitLocked): a write
  // that fails (SQLite busy past its timeout, disk full) leaves the lease expired in memory, and
  // the next Tick tries again instead of leaving a RUNNING job that nobody holds.
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (job.state() == v1::CANCELLING) {
    return TransitionLocked(job, v1::CANCELLED, absl::StrCat("cancelled (", loss.why, ")"));
  }
  if (job.state() != v1::RUNNING) {
    leases_.erase(job_id);  // nothing to write: the lease was already over in the store
    return absl::OkStatus();
  }
  std::string message;
  const v1::JobState to = ApplyLostAttempt(job, loss, &message);
  storage::JobUpdate extra;
  if (to == v1::QUEUED) {
    // An adapter belongs to the attempt that uploaded it: the next attempt must upload its own.
    job.clear_adapter_sha256();
    job.set_adapter_size_bytes(0);
    extra.drop_artifacts = true;
  }
  RETURN_IF_ERROR(TransitionLocked(job, to, message,
                                   to == v1::FAILED ? v1::JobEvent::ERROR : v1::JobEvent::WARNING,
                                   std::move(extra)));
  observer_->JobRemoved(job_id);  // the lost attempt's live series must not linger
  return absl::OkStatus();
}

absl::Status Scheduler::WorkerExited(const std::string& worker_id, const std::string& how) {
  std::lock_guard<std::mutex> lock(mu_);
  auto worker = workers_.find(worker_id);
  if (worker != workers_.end() && !worker->second.lost) {
    worker->second.lost = true;
    PublishWorkersLocked();
  }
  std::vector<std::string> held;
  for (const auto& [job_id, lease] : leases_) {
    if (lease.worker_id == worker_id) held.push_back(job_id);
  }
  absl::Status result = absl::OkStatus();
  // A gang with a rank there loses its whole attempt, wherever its rank 0 runs.
  for (const auto& [job_id, loss] : LostGangsLocked(clock_->Now(), worker_id)) {
    if (std::find(held.begin(), held.end(), job_id) != held.end()) continue;
    absl::Status st = LoseLeaseLocked(job_id, loss);
    if (result.ok()) result = st;
  }
  for (const std::string& job_id : held) {
    const bool restart = leases_[job_id].awaiting_reclaim;
    absl::Status st = LoseLeaseLocked(
        job_id, AttemptLoss{restart ? LossCause::kServerRestarted : LossCause::kWorkerDied,
                            absl::StrCat("worker ", worker_id, " ", how)});
    if (result.ok()) result = st;
  }
  return result;
}

void Scheduler::StoreRecoveredLocked() {
  store_failing_ = false;
  // While nothing could be written, heartbeats could not be answered in time and a worker's
  // silence proves nothing: every lease gets a full lease_timeout from now.
  const absl::Time renewed = clock_->Now() + options_.lease_timeout;
  for (auto& [job_id, lease] : leases_) lease.expires = std::max(lease.expires, renewed);
  spdlog::info("the job store takes writes again; {} leases renewed", leases_.size());
}

void Scheduler::Tick() {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_failing_) {
    if (!store_->CheckWritable().ok()) return;
    StoreRecoveredLocked();
  }
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, AttemptLoss>> expired;
  for (const auto& [job_id, lease] : leases_) {
    if (lease.expires > now) continue;
    expired.emplace_back(
        job_id,
        lease.awaiting_reclaim
            ? AttemptLoss{LossCause::kServerRestarted,
                          absl::StrCat("worker ", lease.worker_id, " did not re-claim it within ",
                                       absl::FormatDuration(options_.restart_grace),
                                       " of a server restart")}
            : AttemptLoss{LossCause::kWorkerSilent,
                          absl::StrCat("worker ", lease.worker_id, " sent no heartbeat for ",
                                       absl::FormatDuration(options_.lease_timeout))});
  }
  for (auto& gang : LostGangsLocked(now)) {
    const bool listed = std::any_of(expired.begin(), expired.end(),
                                    [&](const auto& e) { return e.first == gang.first; });
    if (!listed) expired.push_back(std::move(gang));
  }
  for (const auto& [job_id, loss] : expired) {
    absl::Status st = LoseLeaseLocked(job_id, loss);
    // The lease stays in memory, expired, when the store refused the write: a later tick
    // retries it once the store takes writes again.
    if (!st.ok()) {
      spdlog::warn("job {}: the lost lease is not written yet: {}", job_id,
                   std::string(st.message()));
      break;
    }
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
    job.clear_rank_worker_ids();
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
  absl::StatusOr<std::vector<v1::JobEvent>> applied = store_->Apply(update);
  if (!applied.ok()) {
    if (!store_failing_) {
      spdlog::warn("the job store refuses writes ({}); leases are not expired until it recovers",
                   std::string(applied.status().message()));
    }
    store_failing_ = true;
    return applied.status();
  }
  if (store_failing_) StoreRecoveredLocked();
  const std::vector<v1::JobEvent>& events = *applied;
  const v1::Job& job = update.job;
  const v1::JobState to = job.state();
  if (from != to) {
    --counts_[from];
    ++counts_[to];
    if (from == v1::QUEUED) queue_.erase({queue_key_[job.id()], job.id()});
    if (to == v1::QUEUED) queue_.emplace(queue_key_[job.id()], job.id());
    if (!IsLeased(to)) {
      leases_.erase(job.id());
      gangs_.erase(job.id());  // every rank's lease ends with the attempt
    }
    if (IsFinal(to)) {
      queue_key_.erase(job.id());
      job_sweep_.erase(job.id());
      gang_world_.erase(job.id());
      waiting_reason_.erase(job.id());
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
  for (const auto& [job_id, gang] : gangs_) {
    for (const GangRank& rank : gang.ranks) busy.insert(rank.worker_id);
  }
  for (const auto& [id, worker] : workers_) {
    ++counts[worker.lost ? "lost" : (busy.count(id) ? "busy" : "idle")];
  }
  observer_->Workers(counts);
}

}  // namespace peftd::server
