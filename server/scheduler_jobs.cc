// Scheduler: the JobService side (submit, read, list, cancel, events, datasets, artifacts).
#include <algorithm>
#include <mutex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/admission_sources.h"
#include "server/job_state.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"

namespace peftd::server {
namespace {

using internal::ToProto;

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr int kDefaultEventPageSize = 100;

}  // namespace

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

absl::StatusOr<v1::Job> Scheduler::CreateJob(const v1::CreateJobRequest& req, bool* existed_out) {
  v1::JobSpec spec;
  RETURN_IF_ERROR(ValidateRequest(req, &spec));
  std::lock_guard<std::mutex> lock(mu_);
  v1::Job job;
  job.set_id(options_.new_job_id ? options_.new_job_id() : internal::RandomId("job"));
  job.set_request_id(req.request_id());
  job.set_display_name(req.display_name());
  *job.mutable_labels() = req.labels();
  *job.mutable_spec() = spec;
  job.set_global_batch_size(internal::GlobalBatchSize(spec));
  job.set_state(v1::VALIDATING);
  job.set_attempt(1);
  *job.mutable_create_time() = ToProto(clock_->Now());
  RETURN_IF_ERROR(CheckTransition(v1::VALIDATING, v1::QUEUED));
  job.set_state(v1::QUEUED);
  std::vector<v1::JobEvent> events = {
      EventLocked(job, v1::JobEvent::INFO, internal::QueuedText(spec))};
  bool existed = false;
  ASSIGN_OR_RETURN(v1::Job stored, store_->InsertJob(job, std::move(events), &existed));
  if (existed) {
    if (!google::protobuf::util::MessageDifferencer::Equals(stored.spec(), spec)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "request_id: '", req.request_id(), "' was already used for job ", stored.id(),
          " with a different spec; use a new request_id to submit another job"));
    }
    if (existed_out != nullptr) *existed_out = true;
    return stored;
  }
  EnqueueNewLocked(job);
  PublishCountsLocked();
  ++event_generation_;
  events_cv_.notify_all();
  return job;
}

void Scheduler::EnqueueNewLocked(const v1::Job& job) {
  queue_key_[job.id()] = next_order_++;
  queue_.emplace(queue_key_[job.id()], job.id());
  ++counts_[v1::QUEUED];
  if (!job.sweep_id().empty()) job_sweep_[job.id()] = job.sweep_id();
  if (job.spec().workers() > 1) gang_world_[job.id()] = job.spec().workers();
  observer_->JobSubmitted(job.spec().method());
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
  // Repeats are dropped, so the query binds at most one variable per state however long the
  // request's list (40,000 entries once reached SQLite's variable limit).
  std::set<v1::JobState> states;
  for (int s : req.states()) {
    if (s == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(s)) {
      return absl::InvalidArgumentError(absl::StrCat("states: ", s, " is not a job state"));
    }
    states.insert(static_cast<v1::JobState>(s));
  }
  q.states.assign(states.begin(), states.end());
  if (req.labels_size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: at most ", kMaxLabels, " label filters, got ", req.labels_size()));
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
  RETURN_IF_ERROR(CancelJobLocked(job));
  return job;
}

absl::Status Scheduler::CancelJobLocked(v1::Job& job) {
  if (job.state() == v1::QUEUED || job.state() == v1::VALIDATING) {
    return TransitionLocked(job, v1::CANCELLED, "cancelled while queued");
  }
  if (job.state() == v1::RUNNING) {
    return TransitionLocked(
        job, v1::CANCELLING,
        absl::StrCat("cancel requested; worker ", job.worker_id(), " stops within one step"));
  }
  return absl::OkStatus();
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

absl::StatusOr<storage::Artifact> Scheduler::GetArtifact(const std::string& job_id, bool merged,
                                                         int64_t step) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (step < 0) return absl::InvalidArgumentError("step: must be >= 0 (0 = the final adapter)");
  if (step > 0) {
    if (merged) {
      return absl::InvalidArgumentError(
          "step: a checkpoint has no merged model; download its adapter (without merged)");
    }
    std::string kept;
    bool found = false;
    for (const v1::Checkpoint& cp : job.checkpoints()) {
      found = found || cp.step() == step;
      absl::StrAppend(&kept, kept.empty() ? "" : ", ", cp.step());
    }
    if (!found) {
      return absl::NotFoundError(
          absl::StrCat("job ", job_id, " keeps no checkpoint of step ", step,
                       kept.empty() ? "; it keeps none" : absl::StrCat("; it keeps ", kept)));
    }
    ASSIGN_OR_RETURN(auto artifact,
                     store_->GetArtifact(job_id, storage::CheckpointAdapterKind(step)));
    if (!artifact) {
      return absl::NotFoundError(absl::StrCat("the checkpoint of step ", step, " of job ", job_id,
                                              " has no adapter (its worker did not write one)"));
    }
    return *artifact;
  }
  if (job.state() != v1::SUCCEEDED) {
    // A job that ended otherwise never will have one; a live one may.
    const bool ended = job.state() == v1::FAILED || job.state() == v1::CANCELLED;
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is ", v1::JobState_Name(job.state()),
        ended ? "; it ended without an adapter (only a SUCCEEDED job has one): submit it again"
              : "; its adapter can be downloaded once the job SUCCEEDED"));
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

}  // namespace peftd::server
