// Scheduler: gangs (issue 13, docs/operating.md "Gangs"). A job with spec.workers = N > 1 is
// leased as N ranks at once (server/gang_placement.h); rank 0's lease goes out first, and the
// other ranks get theirs once rank 0 reported the address of its rendezvous store. The job's
// Lease is rank 0's; Gang holds the others. Any rank lost, or a rendezvous that does not complete
// within rendezvous_timeout, loses the whole attempt (LoseLeaseLocked): the other ranks hear
// "drop" at their next heartbeat and the job is requeued to resume from its newest checkpoint.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "server/job_state.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"

namespace peftd::server {

using internal::FromProto;
using internal::ResumeText;
using internal::ToProto;

namespace {

v1::Lease WithRank(v1::Lease lease, int rank, int world, const std::string& key,
                   const std::string& address, absl::Duration timeout) {
  lease.set_rank(rank);
  lease.set_world_size(world);
  lease.set_rendezvous_key(key);
  if (rank > 0) lease.set_rendezvous_address(address);
  lease.set_rendezvous_timeout_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(timeout)));
  return lease;
}

}  // namespace

absl::Status Scheduler::SetWaitingReasonLocked(const std::string& job_id,
                                               const std::string& reason) {
  auto known = waiting_reason_.find(job_id);
  if (known != waiting_reason_.end() && known->second == reason) return absl::OkStatus();
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  job.set_waiting_reason(reason);
  storage::JobUpdate update;
  // DEBUG: the counts in the reason change with every worker that frees or takes a slot.
  update.events.push_back(EventLocked(job, v1::JobEvent::DEBUG, reason));
  update.job = std::move(job);
  RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
  waiting_reason_[job_id] = reason;
  return absl::OkStatus();
}

absl::StatusOr<GangPlan> Scheduler::TryLeaseGangLocked(const std::string& job_id, int world,
                                                       const std::string& worker_id, int* free,
                                                       v1::HeartbeatResponse* resp) {
  std::vector<WorkerSlots> slots;
  for (const auto& [id, w] : workers_) {
    if (!w.lost) slots.push_back({id, id == worker_id ? *free : w.free_slots});
  }
  GangPlan plan = PlaceGang(world, worker_id, slots);
  if (!plan.placed()) {
    RETURN_IF_ERROR(SetWaitingReasonLocked(job_id, plan.waiting_reason));
    return plan;
  }
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  const absl::Time now = clock_->Now();
  if (job.attempt() == 1)
    observer_->QueueWait(absl::ToDoubleSeconds(now - FromProto(job.create_time())));
  job.set_worker_id(plan.rank_workers[0]);
  job.clear_rank_worker_ids();
  std::vector<std::string> placed;
  for (int r = 0; r < world; ++r) {
    job.add_rank_worker_ids(plan.rank_workers[r]);
    placed.push_back(absl::StrCat("rank ", r, " on ", plan.rank_workers[r]));
  }
  job.clear_waiting_reason();
  job.mutable_progress()->clear_rank_step_seconds();
  job.mutable_progress()->clear_rank_allreduce_seconds();
  job.set_phase(v1::LOADING_MODEL);
  if (!job.has_start_time()) *job.mutable_start_time() = ToProto(now);
  RETURN_IF_ERROR(
      TransitionLocked(job, v1::RUNNING,
                       absl::StrCat("attempt ", job.attempt(), " leased to a gang of ", world, " (",
                                    absl::StrJoin(placed, ", "), "), starting ", ResumeText(job))));
  waiting_reason_.erase(job_id);
  leases_[job_id] = Lease{plan.rank_workers[0], job.attempt(), now + options_.lease_timeout, false};
  Gang gang;
  gang.attempt = job.attempt();
  gang.world = world;
  gang.key = absl::StrCat(job_id, "/attempt-", job.attempt());
  for (int r = 1; r < world; ++r) {
    gang.ranks.push_back(
        GangRank{plan.rank_workers[r], false, false, now + options_.lease_timeout});
  }
  for (const std::string& w : plan.rank_workers) {
    if (w == worker_id) {
      --*free;
    } else {
      --workers_[w].free_slots;
    }
  }
  if (plan.rank_workers[0] == worker_id) {
    ASSIGN_OR_RETURN(v1::Lease lease, BuildLeaseLocked(job));
    *resp->add_leases() =
        WithRank(std::move(lease), 0, world, gang.key, "", options_.rendezvous_timeout);
    gang.rank0_delivered = true;
  }
  gangs_[job_id] = std::move(gang);
  return plan;
}

int Scheduler::DeliverGangRanksLocked(const std::string& worker_id, v1::HeartbeatResponse* resp) {
  const absl::Time now = clock_->Now();
  int used = 0;
  for (auto& [job_id, gang] : gangs_) {
    auto lease = leases_.find(job_id);
    if (lease == leases_.end() || lease->second.attempt != gang.attempt) continue;
    std::vector<int> due;
    if (!gang.rank0_delivered && lease->second.worker_id == worker_id) due.push_back(0);
    for (size_t i = 0; i < gang.ranks.size(); ++i) {
      GangRank& rank = gang.ranks[i];
      if (rank.worker_id != worker_id || rank.delivered) continue;
      ++used;  // its slot stays promised while rank 0 opens the rendezvous
      rank.expires = now + options_.lease_timeout;
      if (!gang.address.empty()) due.push_back(static_cast<int>(i) + 1);
    }
    if (due.empty()) continue;
    absl::StatusOr<v1::Job> job = store_->GetJob(job_id);
    absl::StatusOr<v1::Lease> built =
        job.ok() ? BuildLeaseLocked(*job) : absl::StatusOr<v1::Lease>(job.status());
    if (!built.ok()) continue;  // retried at its next heartbeat
    for (int r : due) {
      *resp->add_leases() =
          WithRank(*built, r, gang.world, gang.key, gang.address, options_.rendezvous_timeout);
      if (r == 0) {
        gang.rank0_delivered = true;
        lease->second.expires = now + options_.lease_timeout;
        ++used;
      } else {
        gang.ranks[r - 1].delivered = true;
      }
    }
  }
  return used;
}

bool Scheduler::IsCurrentRankLocked(const std::string& worker_id,
                                    const v1::ProgressReport& report) const {
  auto gang = gangs_.find(report.job_id());
  if (gang == gangs_.end() || gang->second.attempt != report.attempt()) return false;
  const int r = report.rank();
  if (r < 1 || r >= gang->second.world) return false;
  const GangRank& rank = gang->second.ranks[r - 1];
  return rank.worker_id == worker_id && rank.delivered;
}

absl::Status Scheduler::RecordGangReportLocked(const std::string& worker_id,
                                               const v1::ProgressReport& report, v1::Job& job) {
  auto found = gangs_.find(job.id());
  if (found == gangs_.end()) return absl::OkStatus();
  Gang& gang = found->second;
  const int r = report.rank();
  const absl::Time now = clock_->Now();
  std::vector<v1::JobEvent> events;
  if (r == 0) {
    if (!report.rendezvous_address().empty() && gang.address.empty()) {
      gang.address = report.rendezvous_address();
      gang.rendezvous_deadline = now + options_.rendezvous_timeout;
      events.push_back(
          EventLocked(job, v1::JobEvent::INFO,
                      absl::StrCat("rank 0 opened the rendezvous at ", gang.address, "; ranks 1..",
                                   gang.world - 1, " get their leases")));
    }
    if (report.joined()) gang.rank0_joined = true;
  } else {
    GangRank& rank = gang.ranks[r - 1];
    rank.expires = now + options_.lease_timeout;
    if (report.joined()) rank.joined = true;
    for (const v1::JobEvent& e : report.events()) {
      if (e.level() < v1::JobEvent::WARNING) continue;  // rank 0 tells the job's story
      events.push_back(EventLocked(job, e.level(),
                                   absl::StrCat("rank ", r, " (", worker_id, "): ", e.message())));
    }
  }
  v1::JobProgress* p = job.mutable_progress();
  while (p->rank_step_seconds_size() < gang.world) p->add_rank_step_seconds(0);
  while (p->rank_allreduce_seconds_size() < gang.world) p->add_rank_allreduce_seconds(0);
  if (report.step_durations_seconds_size() > 0) {
    p->set_rank_step_seconds(
        r, report.step_durations_seconds(report.step_durations_seconds_size() - 1));
  }
  if (report.allreduce_seconds() > 0) p->set_rank_allreduce_seconds(r, report.allreduce_seconds());
  if (gang.rendezvous_deadline && gang.rank0_joined &&
      std::all_of(gang.ranks.begin(), gang.ranks.end(),
                  [](const GangRank& g) { return g.joined; })) {
    gang.rendezvous_deadline.reset();
    events.push_back(
        EventLocked(job, v1::JobEvent::INFO, absl::StrCat("all ", gang.world, " ranks met")));
  }
  if (!events.empty()) {
    storage::JobUpdate update;
    update.events = std::move(events);
    update.job = job;
    RETURN_IF_ERROR(CommitSameStateLocked(std::move(update)));
  }
  if (r > 0) observer_->JobProgress(job.id(), job.spec().method(), job.progress());
  return absl::OkStatus();
}

std::vector<std::pair<std::string, AttemptLoss>> Scheduler::LostGangsLocked(
    absl::Time now, const std::string& dead_worker) const {
  std::vector<std::pair<std::string, AttemptLoss>> lost;
  for (const auto& [job_id, gang] : gangs_) {
    for (size_t i = 0; i < gang.ranks.size(); ++i) {
      const GangRank& rank = gang.ranks[i];
      if (!dead_worker.empty()) {
        if (rank.worker_id != dead_worker) continue;
        lost.emplace_back(job_id, AttemptLoss{LossCause::kWorkerDied,
                                              absl::StrCat("worker ", dead_worker, " of rank ",
                                                           i + 1, " of the gang died")});
        break;
      }
      if (rank.expires > now) continue;
      lost.emplace_back(job_id,
                        AttemptLoss{LossCause::kWorkerSilent,
                                    absl::StrCat("worker ", rank.worker_id, " of rank ", i + 1,
                                                 " sent no heartbeat for ",
                                                 absl::FormatDuration(options_.lease_timeout))});
      break;
    }
    if (!dead_worker.empty() || (!lost.empty() && lost.back().first == job_id)) continue;
    if (gang.rendezvous_deadline && *gang.rendezvous_deadline <= now) {
      std::vector<std::string> missing;
      if (!gang.rank0_joined) missing.push_back("0");
      for (size_t i = 0; i < gang.ranks.size(); ++i) {
        if (!gang.ranks[i].joined) missing.push_back(absl::StrCat(i + 1));
      }
      lost.emplace_back(
          job_id,
          AttemptLoss{LossCause::kWorkerSilent,
                      absl::StrCat("the gang's rendezvous did not complete within ",
                                   absl::FormatDuration(options_.rendezvous_timeout), " (rank ",
                                   absl::StrJoin(missing, ", "), " did not arrive)")});
    }
  }
  return lost;
}

absl::Status Scheduler::CompleteRankLocked(const v1::CompleteJobRequest& req) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(req.job_id()));
  const int r = req.last_report().rank();
  if (IsFinal(job.state()) && job.attempt() == req.attempt()) return absl::OkStatus();
  auto gang = gangs_.find(req.job_id());
  if (gang == gangs_.end() || gang->second.attempt != req.attempt() || r >= gang->second.world ||
      gang->second.ranks[r - 1].worker_id != req.worker_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", req.job_id(), " attempt ", req.attempt(), " rank ", r,
                     " is not current (the job is ", v1::JobState_Name(job.state()), " at attempt ",
                     job.attempt(), "); stop it without reporting"));
  }
  // Rank 0 ends the job; the others' success or cancellation says nothing new.
  if (req.final_state() != v1::FAILED) return absl::OkStatus();
  const std::string what =
      absl::StrCat("rank ", r, " on worker ", req.worker_id(), " failed: ", req.error().message());
  if (req.error().blame() == v1::JobError::USER && job.state() == v1::RUNNING) {
    // The spec or the data: every rank would fail the same way.
    *job.mutable_error() = req.error();
    return TransitionLocked(job, v1::FAILED, absl::StrCat("failed: ", what), v1::JobEvent::ERROR);
  }
  return LoseLeaseLocked(req.job_id(), AttemptLoss{LossCause::kWorkerSilent, what});
}

}  // namespace peftd::server
