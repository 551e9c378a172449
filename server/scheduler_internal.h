// Helpers shared by the scheduler's files (scheduler.cc: recovery, leases, writing;
// scheduler_jobs.cc: JobService; scheduler_workers.cc: WorkerService; scheduler_sweeps.cc:
// sweeps). Not part of its contract.
#ifndef PEFTD_SERVER_SCHEDULER_INTERNAL_H_
#define PEFTD_SERVER_SCHEDULER_INTERNAL_H_

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "peftd/v1/job.pb.h"
#include "peftd/v1/worker.pb.h"
#include "server/attempt_policy.h"
#include "storage/job_store.h"

namespace peftd::server::internal {

inline google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  ts.set_seconds(micros / 1000000);
  ts.set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
  return ts;
}

inline absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

inline bool IsLeased(v1::JobState s) { return s == v1::RUNNING || s == v1::CANCELLING; }

inline std::string ShortSha(const std::string& sha) { return sha.substr(0, 12); }

inline std::string ResumeText(const v1::Job& job) {
  const v1::Checkpoint* cp = NewestCheckpoint(job);
  return cp == nullptr ? "from the start"
                       : absl::StrCat("from the checkpoint of step ", cp->step());
}

// The blob JobSpec.init_from names: the adapter archive of the job (step 0) or its kept
// checkpoint of that step (the newest attempt's). Admission checked that it exists;
// FailedPrecondition when it went since.
absl::StatusOr<v1::InitSource> ResolveInitSource(storage::JobStore& store,
                                                 const v1::InitFrom& init);

// A new id: `prefix` + "-" + 16 random hex digits ("job-5b180f1280a0f29c").
inline std::string RandomId(const char* prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  return absl::StrFormat("%s-%016x", prefix, rng());
}

// Sequences per optimizer step over every rank of the job's gang (Job.global_batch_size).
inline int64_t GlobalBatchSize(const v1::JobSpec& spec) {
  return int64_t{spec.batch_size()} * std::max(1, spec.gradient_accumulation_steps()) *
         std::max(1, spec.workers());
}

// The first event of a new job.
inline std::string QueuedText(const v1::JobSpec& spec) {
  return absl::StrCat(
      "queued: ", v1::Method_Name(spec.method()),
      spec.token_gate().enabled() ? " with the token gate" : "", " on ", spec.base_model(),
      ", training data ", spec.training_dataset_id(),
      spec.workers() > 1 ? absl::StrCat(", a gang of ", spec.workers(), " ranks") : "");
}

}  // namespace peftd::server::internal

#endif  // PEFTD_SERVER_SCHEDULER_INTERNAL_H_
