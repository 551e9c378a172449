// Scheduler: sweeps (docs/sweeps.md). A sweep is stored once with its children's ids and values;
// its children are ordinary jobs carrying sweep_id, queued and leased like any other, except that
// leasing skips a child whose sweep already has max_concurrency children leased
// (NextLeasableLocked).
#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/job_state.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"
#include "server/sweep_expand.h"
#include "server/sweep_view.h"

namespace peftd::server {
namespace {

using internal::ToProto;

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;

absl::Status CheckSweepRequest(const v1::CreateSweepRequest& req) {
  if (req.request_id().size() > kMaxRequestIdChars) {
    return absl::InvalidArgumentError(absl::StrCat("request_id: at most ", kMaxRequestIdChars,
                                                   " characters, got ", req.request_id().size()));
  }
  if (req.display_name().size() > kMaxDisplayNameChars) {
    return absl::InvalidArgumentError(absl::StrCat("display_name: at most ", kMaxDisplayNameChars,
                                                   " characters, got ", req.display_name().size()));
  }
  if (req.spec().max_concurrency() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.max_concurrency: must be >= 0 (0 = no limit), got ", req.spec().max_concurrency()));
  }
  if (!v1::SweepMetric_IsValid(req.spec().metric())) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.metric: ", req.spec().metric(), " is not a metric"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Sweep> Scheduler::CreateSweep(const v1::CreateSweepRequest& req) {
  RETURN_IF_ERROR(CheckSweepRequest(req));
  ASSIGN_OR_RETURN(std::vector<SweepPoint> points,
                   ExpandSweep(req.spec(), options_.max_sweep_children));
  // Every child is admitted before anything is stored: a sweep is accepted whole or not at all.
  std::vector<v1::JobSpec> specs(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    v1::CreateJobRequest child;
    *child.mutable_spec() = points[i].spec;
    *child.mutable_labels() = req.labels();
    absl::Status st = ValidateRequest(child, &specs[i]);
    if (!st.ok()) {
      return absl::Status(
          st.code(), absl::StrCat("children[", i, "] (", DescribeAssignments(points[i].assignments),
                                  "): ", st.message()));
    }
  }
  const std::string sweep_id =
      options_.new_sweep_id ? options_.new_sweep_id() : internal::RandomId("sweep");
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = ToProto(clock_->Now());
  v1::Sweep sweep;
  sweep.set_id(sweep_id);
  sweep.set_request_id(req.request_id());
  sweep.set_display_name(req.display_name());
  *sweep.mutable_labels() = req.labels();
  *sweep.mutable_spec() = req.spec();
  *sweep.mutable_create_time() = now;
  std::vector<storage::NewJob> children;
  for (size_t i = 0; i < points.size(); ++i) {
    storage::NewJob child;
    v1::Job& job = child.job;
    job.set_id(options_.new_job_id ? options_.new_job_id() : internal::RandomId("job"));
    job.set_display_name(
        absl::StrCat(req.display_name().empty() ? sweep_id : req.display_name(), " #", i));
    *job.mutable_labels() = req.labels();
    *job.mutable_spec() = specs[i];
    job.set_global_batch_size(internal::GlobalBatchSize(specs[i]));
    job.set_state(v1::QUEUED);
    job.set_attempt(1);
    *job.mutable_create_time() = now;
    job.set_sweep_id(sweep_id);
    child.events.push_back(
        EventLocked(job, v1::JobEvent::INFO,
                    absl::StrCat(internal::QueuedText(job.spec()), " (child ", i, " of sweep ",
                                 sweep_id, ": ", DescribeAssignments(points[i].assignments), ")")));
    v1::SweepChild* row = sweep.add_children();
    row->set_index(static_cast<int32_t>(i));
    row->set_job_id(job.id());
    for (const auto& a : points[i].assignments) *row->add_assignments() = a;
    children.push_back(std::move(child));
  }
  bool existed = false;
  ASSIGN_OR_RETURN(v1::Sweep stored, store_->InsertSweep(sweep, children, &existed));
  if (existed) {
    if (!google::protobuf::util::MessageDifferencer::Equals(stored.spec(), req.spec())) {
      return absl::AlreadyExistsError(absl::StrCat(
          "request_id: '", req.request_id(), "' was already used for sweep ", stored.id(),
          " with a different spec; use a new request_id to submit another sweep"));
    }
    ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, store_->ListSweepJobs(stored.id()));
    return BuildSweepView(stored, jobs, clock_->Now());
  }
  if (req.spec().max_concurrency() > 0) {
    sweep_concurrency_[sweep_id] = req.spec().max_concurrency();
  }
  std::vector<v1::Job> jobs;
  for (const storage::NewJob& child : children) {
    EnqueueNewLocked(child.job);
    jobs.push_back(child.job);
  }
  PublishCountsLocked();
  ++event_generation_;
  events_cv_.notify_all();
  return BuildSweepView(sweep, jobs, clock_->Now());
}

absl::StatusOr<v1::Sweep> Scheduler::GetSweep(const std::string& sweep_id) {
  ASSIGN_OR_RETURN(v1::Sweep sweep, store_->GetSweep(sweep_id));
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, store_->ListSweepJobs(sweep_id));
  return BuildSweepView(sweep, jobs, clock_->Now());
}

absl::StatusOr<v1::ListSweepsResponse> Scheduler::ListSweeps(const v1::ListSweepsRequest& req) {
  if (req.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be >= 0 (0 = default ", kDefaultPageSize, ")"));
  }
  const int page_size =
      req.page_size() == 0 ? kDefaultPageSize : std::min(req.page_size(), kMaxPageSize);
  ASSIGN_OR_RETURN(storage::SweepPage page, store_->ListSweeps(page_size, req.page_token()));
  v1::ListSweepsResponse resp;
  const absl::Time now = clock_->Now();
  for (const v1::Sweep& sweep : page.sweeps) {
    ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, store_->ListSweepJobs(sweep.id()));
    *resp.add_sweeps() = BuildSweepView(sweep, jobs, now);
  }
  resp.set_next_page_token(page.next_page_token);
  return resp;
}

absl::StatusOr<v1::Sweep> Scheduler::CancelSweep(const std::string& sweep_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(v1::Sweep sweep, store_->GetSweep(sweep_id));
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, store_->ListSweepJobs(sweep_id));
  bool active = false;
  for (const v1::Job& job : jobs) active |= !IsFinal(job.state());
  // A sweep whose children all ended stays as it ended.
  if (active && !sweep.cancel_requested()) {
    sweep.set_cancel_requested(true);
    RETURN_IF_ERROR(store_->UpdateSweep(sweep));
  }
  for (v1::Job& job : jobs) RETURN_IF_ERROR(CancelJobLocked(job));
  return BuildSweepView(sweep, jobs, clock_->Now());
}

}  // namespace peftd::server
