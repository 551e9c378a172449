// The scheduler (DESIGN.md "The job", issue 5): accepts jobs, queues them FIFO, leases them to
// workers through heartbeats, fences stale attempts, requeues jobs whose worker went silent and
// recovers leases after a restart. Every state change goes through CheckTransition (job_state.h)
// and is written with its event in one store transaction. Time comes only from the Clock; Tick()
// expires leases (a thread calls it in production, tests call it after advancing a FakeClock).
//
// The interface speaks proto messages and absl::Status only; the gRPC services translate.
// Thread-safe: one mutex serializes every change (the store's writes are serialized anyway).
#ifndef PEFTD_SERVER_SCHEDULER_H_
#define PEFTD_SERVER_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "peftd/v1/jobs.pb.h"
#include "peftd/v1/worker.pb.h"
#include "server/attempt_policy.h"
#include "server/gang_placement.h"
#include "server/job_admission.h"
#include "server/scheduler_observer.h"
#include "storage/blob_store.h"
#include "storage/job_store.h"

namespace peftd::server {

struct SchedulerOptions {
  std::string model_root;  // JobSpec.base_model resolves under it
  absl::Duration heartbeat_interval = absl::Seconds(2);
  absl::Duration lease_timeout = absl::Seconds(6);  // ~3 missed heartbeats
  // After a restart, how long the jobs that were running wait for their worker to re-register
  // and re-claim them before they are requeued.
  absl::Duration restart_grace = absl::Seconds(30);
  // Gangs (JobSpec.workers > 1): once rank 0 reported its rendezvous address, every rank must
  // report that it met the others within this, or the attempt is lost and requeued. Sent to the
  // workers in the lease as the bound of their rendezvous and collectives.
  absl::Duration rendezvous_timeout = absl::Seconds(120);
  // New job ids; default "job-" + 16 random hex digits (tests make them deterministic).
  std::function<std::string()> new_job_id;
  // > 0: the server runs local workers on this host, with this much usable memory; CreateJob
  // checks the memory estimate against it while no worker has registered (server/job_admission.h).
  int64_t local_worker_memory_bytes = 0;
  // The most children one sweep may have (CreateSweep refuses a larger grid or list).
  int max_sweep_children = 64;
  // New sweep ids; default "sweep-" + 16 random hex digits.
  std::function<std::string()> new_sweep_id;
};

class Scheduler {
 public:
  // Loads the jobs that are not final from `store`: QUEUED ones go back in the queue, RUNNING and
  // CANCELLING ones keep their lease for restart_grace. `store`, `blobs`, `clock` and `observer`
  // (nullable) must outlive the scheduler.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(storage::JobStore* store,
                                                           storage::BlobStore* blobs,
                                                           const Clock* clock,
                                                           SchedulerOptions options,
                                                           SchedulerObserver* observer = nullptr);
  ~Scheduler();

  // --- JobService -------------------------------------------------------------------------------

  // Validates (InvalidArgument / NotFound naming the field; nothing stored) and queues a job.
  // Idempotent by request_id: the same id with the same spec returns the same job, with another
  // spec AlreadyExists; concurrent duplicates create exactly one job. `*existed` (when given) says
  // whether the job was already there.
  absl::StatusOr<v1::Job> CreateJob(const v1::CreateJobRequest& request, bool* existed = nullptr);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  // Newest first; page_size defaults to 50, at most 1000.
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  // Idempotent: QUEUED -> CANCELLED now; RUNNING -> CANCELLING (the worker hears of it in its
  // next heartbeat reply); CANCELLING or final: returned unchanged.
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);
  absl::StatusOr<std::vector<v1::JobEvent>> ListJobEvents(const std::string& job_id,
                                                          int64_t after_event_id, int page_size);
  absl::StatusOr<std::vector<v1::Checkpoint>> ListCheckpoints(const std::string& job_id);
  // Blocks until the job has an event after `after_event_id`, or is final, or `max_wait` (real
  // time: a poll interval for the caller to notice a cancelled stream) passed, or Shutdown().
  void WaitForEvents(const std::string& job_id, int64_t after_event_id, absl::Duration max_wait);

  // Records an uploaded dataset (its bytes already in the blob store). Same id: no-op.
  absl::StatusOr<v1::Dataset> RecordDataset(const v1::Dataset& dataset);
  absl::StatusOr<std::vector<v1::Dataset>> ListDatasets();
  // The adapter (or merged model) of a SUCCEEDED job: FailedPrecondition before that. With
  // step > 0: the adapter of the job's kept checkpoint of that step, in any state; NotFound
  // listing the kept steps when there is none.
  absl::StatusOr<storage::Artifact> GetArtifact(const std::string& job_id, bool merged,
                                                int64_t step = 0);

  // --- Sweeps (scheduler_sweeps.cc, docs/sweeps.md) ---------------------------------------------

  // Expands the sweep into children (server/sweep_expand.h) and admits each like CreateJob; the
  // first child that would be refused refuses the whole sweep with its code and a message
  // starting "children[i] (field=value, ...): " then the job's refusal. Otherwise the sweep and
  // every child are stored in one transaction and the children queue in order. Idempotent by
  // request_id like CreateJob.
  absl::StatusOr<v1::Sweep> CreateSweep(const v1::CreateSweepRequest& request);
  // The sweep with its comparison table (server/sweep_view.h).
  absl::StatusOr<v1::Sweep> GetSweep(const std::string& sweep_id);
  // Newest first; page_size defaults to 50, at most 1000.
  absl::StatusOr<v1::ListSweepsResponse> ListSweeps(const v1::ListSweepsRequest& request);
  // Idempotent: records the cancel and cancels every child as CancelJob does.
  absl::StatusOr<v1::Sweep> CancelSweep(const std::string& sweep_id);

  // --- WorkerService ----------------------------------------------------------------------------

  // Records the worker and re-claims the jobs in running_job_ids that are still leased to it;
  // jobs leased to it that it no longer lists are requeued at once (it restarted).
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request);
  // Records reports of current attempts (stale ones come back in drop_job_ids), refreshes their
  // leases, returns cancellations and new leases for free slots. NotFound for an unregistered
  // worker (it must Register first).
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  // OK when (job_id, attempt) is the job's current lease (fencing for uploads and fetches);
  // FailedPrecondition naming the current attempt otherwise.
  absl::Status CheckLease(const std::string& job_id, int attempt);
  // A checkpoint whose bytes are in the blob store.
  absl::Status RecordCheckpoint(const std::string& job_id, int attempt, int64_t step,
                                const std::string& sha256, int64_t size_bytes);
  // The checkpoint a lease resumes from (FetchCheckpoint): NotFound unless the job recorded it.
  absl::StatusOr<v1::Checkpoint> FindCheckpoint(const std::string& job_id,
                                                const std::string& sha256);
  // Whether a dataset with these bytes was uploaded (FetchDataset).
  absl::StatusOr<bool> IsDataset(const std::string& sha256);
  // The adapter (or merged model) an attempt uploaded; with step > 0 the adapter of its
  // checkpoint of that step (storage::CheckpointAdapterKind).
  absl::Status RecordAdapter(const std::string& job_id, int attempt, bool merged,
                             const std::string& sha256, int64_t size_bytes, int64_t step = 0);
  // Final report of an attempt. Idempotent for a repeated identical report.
  absl::Status CompleteJob(const v1::CompleteJobRequest& request);

  // The process of worker `worker_id` ended (`how`: "killed by signal 9 (Killed)"); its
  // supervisor knows at once, before the lease would expire. Marks it lost and loses its leases
  // as a worker death (attempt_policy.h).
  absl::Status WorkerExited(const std::string& worker_id, const std::string& how);

  // Expires leases whose worker was silent for lease_timeout (restart_grace after a restart):
  // back to QUEUED with attempt + 1 or FAILED (attempt_policy.h); CANCELLING ones become
  // CANCELLED. Marks silent workers lost. A lease whose write the store refuses stays expired in
  // memory and is retried later. While the store refuses writes (SQLite locked past its busy
  // timeout, disk full) no lease expires; when it takes writes again every lease is renewed for
  // lease_timeout, since the workers could not be heard meanwhile.
  void Tick();
  // Wakes every WaitForEvents; later calls return at once.
  void Shutdown();
  bool shutting_down();

 private:
  struct Lease {
    std::string worker_id;
    int attempt = 0;
    absl::Time expires;
    bool awaiting_reclaim = false;  // recovered after a restart, not re-claimed yet
  };
  struct Worker {
    v1::RegisterRequest registration;
    absl::Time last_seen;
    bool lost = false;
    // Its last reported free slots less the slots promised to it since (gang ranks placed on it
    // while another worker's heartbeat was answered).
    int free_slots = 0;
  };
  // A rank > 0 of a leased gang (rank 0 is the job's Lease). Its lease is handed to its worker
  // only once rank 0 reported the rendezvous address.
  struct GangRank {
    std::string worker_id;
    bool delivered = false;
    bool joined = false;  // reported that it met every rank
    absl::Time expires;   // like Lease::expires; refreshed by its worker's heartbeats
  };
  // The current attempt of a RUNNING or CANCELLING gang (scheduler_gangs.cc).
  struct Gang {
    int attempt = 0;
    int world = 0;
    std::string key;               // Lease.rendezvous_key: unique to the attempt
    std::string address;           // rank 0's store, once reported
    bool rank0_delivered = false;  // rank 0's lease went out
    bool rank0_joined = false;
    std::optional<absl::Time> rendezvous_deadline;  // set when the address arrives
    std::vector<GangRank> ranks;                    // index r - 1 for rank r
  };

  Scheduler(storage::JobStore* store, storage::BlobStore* blobs, const Clock* clock,
            SchedulerOptions options, SchedulerObserver* observer);
  absl::Status Recover();
  // Admission (server/job_admission.h) with the store, the model root and the live workers.
  absl::Status ValidateRequest(const v1::CreateJobRequest& request, v1::JobSpec* spec);
  // The registered workers that are not lost, with the memory they advertise. Locks mu_.
  std::vector<LiveWorker> LiveWorkers();

  // Writes `job` (whose state may have changed from `from`) and `events` in one transaction and
  // updates the in-memory queue, leases and counts. Requires mu_.
  absl::Status CommitLocked(v1::JobState from, storage::JobUpdate update);
  // CommitLocked for an update that does not change the job's state (progress, records).
  absl::Status CommitSameStateLocked(storage::JobUpdate update);
  // The store took a write after refusing some: renews every lease. Requires mu_.
  void StoreRecoveredLocked();
  v1::JobEvent EventLocked(const v1::Job& job, v1::JobEvent::Level level,
                           const std::string& message) const;
  absl::Status TransitionLocked(v1::Job& job, v1::JobState to, const std::string& message,
                                v1::JobEvent::Level level = v1::JobEvent::INFO,
                                storage::JobUpdate extra = {});
  absl::Status LoseLeaseLocked(const std::string& job_id, const AttemptLoss& loss);
  absl::Status RecordReportLocked(v1::Job& job, const v1::ProgressReport& report,
                                  std::vector<v1::JobEvent>* events);
  // The first queued job not in `skip` that may be leased now: a sweep's child waits while its
  // sweep has max_concurrency children leased. Requires mu_.
  std::optional<std::string> NextLeasableLocked(const std::set<std::string>& skip = {}) const;
  absl::StatusOr<v1::Lease> LeaseLocked(const std::string& worker_id, const std::string& job_id);
  // The lease message of `job` as it is now (datasets, resume point, init weights).
  absl::StatusOr<v1::Lease> BuildLeaseLocked(const v1::Job& job);
  // Hands out queued work for the heartbeat of `worker_id`, which has `free` slots: single jobs
  // to it, gangs across every live worker (all or nothing; the queue head reserves).
  void LeaseQueuedLocked(const std::string& worker_id, int free, v1::HeartbeatResponse* resp);

  // --- Gangs (scheduler_gangs.cc) ---
  // Places the queued gang `job_id` if the live workers have room, answering `worker_id`'s
  // heartbeat with its ranks there. Returns the plan (placed or why not).
  absl::StatusOr<GangPlan> TryLeaseGangLocked(const std::string& job_id, int world,
                                              const std::string& worker_id, int* free,
                                              v1::HeartbeatResponse* resp);
  // Rank leases waiting for `worker_id` that may go out now (rank 0 always, the others once the
  // address is known); refreshes the expiry of those still waiting. Returns how many went.
  int DeliverGangRanksLocked(const std::string& worker_id, v1::HeartbeatResponse* resp);
  // A report of a rank > 0 (or of rank 0's gang figures): records it or answers with a drop.
  absl::Status RecordGangReportLocked(const std::string& worker_id,
                                      const v1::ProgressReport& report, v1::Job& job);
  // Whether `report` (rank > 0) belongs to the current attempt of its gang on `worker_id`.
  bool IsCurrentRankLocked(const std::string& worker_id, const v1::ProgressReport& report) const;
  // Writes the job's waiting reason when it changed.
  absl::Status SetWaitingReasonLocked(const std::string& job_id, const std::string& reason);
  // A rank > 0 ended its attempt (CompleteJob with last_report.rank > 0).
  absl::Status CompleteRankLocked(const v1::CompleteJobRequest& req);
  // The gang attempts that lost a rank: its worker went silent past its lease or the rendezvous
  // did not complete in time (Tick), or its worker is `dead_worker` (WorkerExited).
  std::vector<std::pair<std::string, AttemptLoss>> LostGangsLocked(
      absl::Time now, const std::string& dead_worker = "") const;
  // CancelJob's transition of `job` (updated in place). Requires mu_.
  absl::Status CancelJobLocked(v1::Job& job);
  // A new QUEUED job (already stored) joins the queue and the counts. Requires mu_.
  void EnqueueNewLocked(const v1::Job& job);
  absl::Status CheckLeaseLocked(const std::string& job_id, int attempt) const;
  void PublishCountsLocked();
  void PublishWorkersLocked();

  storage::JobStore* const store_;
  storage::BlobStore* const blobs_;
  const Clock* const clock_;
  const SchedulerOptions options_;
  SchedulerObserver* const observer_;
  SchedulerObserver null_observer_;

  std::mutex mu_;
  std::condition_variable events_cv_;
  bool shutdown_ = false;         // guarded by mu_
  bool store_failing_ = false;    // guarded by mu_; the last write to the store failed
  int64_t event_generation_ = 0;  // guarded by mu_; bumped on every new event
  // The queue, FIFO by submission order (a requeued job keeps its place).
  std::set<std::pair<int64_t, std::string>> queue_;  // guarded by mu_; (order, job id)
  std::map<std::string, int64_t> queue_key_;         // guarded by mu_; job id -> order
  int64_t next_order_ = 0;                           // guarded by mu_
  std::map<std::string, Lease> leases_;              // guarded by mu_; RUNNING and CANCELLING jobs
  std::map<std::string, Worker> workers_;            // guarded by mu_
  std::map<v1::JobState, int64_t> counts_;           // guarded by mu_
  // Sweep children that are not final: job id -> sweep id.
  std::map<std::string, std::string> job_sweep_;  // guarded by mu_
  // Sweeps with a concurrency limit: sweep id -> max_concurrency (> 0).
  std::map<std::string, int> sweep_concurrency_;  // guarded by mu_
  // Jobs with spec.workers > 1 that are not final: job id -> world size.
  std::map<std::string, int> gang_world_;  // guarded by mu_
  std::map<std::string, Gang> gangs_;      // guarded by mu_; leased gangs by job id
  // The waiting reason last written per queued gang, to write it only when it changes.
  std::map<std::string, std::string> waiting_reason_;  // guarded by mu_
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_SCHEDULER_H_
