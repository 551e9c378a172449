// Admission: everything the server checks about a CreateJobRequest before it stores a job
// (DESIGN.md, "Hostile input"): the request's own fields, the spec on its own
// (common/job_spec.h: ranges, finite numbers, module patterns), the spec against its model's
// config.json (common/job_spec_model.h: module names, layers, labels), the datasets, and the
// job's peak-memory estimate against the memory the workers advertise
// (common/memory_estimate.h). LibTorch-free and store-free: what it reads from the rest of the
// server comes through AdmissionSources, so tests and the fuzz target
// (fuzz/fuzz_create_job_request.cc) run it on fakes.
#ifndef PEFTD_SERVER_JOB_ADMISSION_H_
#define PEFTD_SERVER_JOB_ADMISSION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "peftd/v1/jobs.pb.h"
#include "peftd/v1/worker.pb.h"

namespace peftd::server {

// Caps of the request fields around the spec (docs/job-spec.md, "Request fields").
inline constexpr size_t kMaxRequestIdChars = 128;
inline constexpr size_t kMaxDisplayNameChars = 256;
inline constexpr int kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyChars = 63;
inline constexpr size_t kMaxLabelValueChars = 256;

// The memory one worker can give a job.
struct WorkerMemory {
  int64_t bytes = 0;
  std::string what;  // for messages: "the largest worker (w-1)"
};

// A registered worker that is not lost, as admission sees it.
struct LiveWorker {
  std::string id;
  int64_t memory_bytes = 0;  // 0: it advertises none
};

// The memory a worker advertises at Register: the largest of its devices' memory_bytes (0 when
// none says).
int64_t AdvertisedMemory(const v1::RegisterRequest& registration);

// The largest memory among `live` workers; nullopt when one of them advertises none (it might be
// the largest). With no live worker: `local_host_bytes` when > 0 (the server runs local workers
// on this host: UsableMemoryBytes()), else nullopt (remote workers only, none registered yet).
std::optional<WorkerMemory> LargestWorkerMemory(const std::vector<LiveWorker>& live,
                                                int64_t local_host_bytes);

// What admission reads from the rest of the server. Calls come from the CreateJob handler's
// thread; implementations must be thread-safe.
class AdmissionSources {
 public:
  virtual ~AdmissionSources() = default;
  // config.json of JobSpec.base_model. Errors start with "base_model".
  virtual absl::StatusOr<model::ModelConfig> ReadModelConfig(const std::string& base_model) = 0;
  // The stored dataset `id`; NotFound when there is none.
  virtual absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) = 0;
  // The most memory one worker can give a job; nullopt when unknown (the check is skipped).
  virtual std::optional<WorkerMemory> LargestWorkerMemory() = 0;
  // The stored job `id` (JobSpec.init_from); NotFound when there is none.
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& id) {
    return absl::NotFoundError("no job '" + id + "'");
  }
};

// The spec with its defaults filled, ready to store, or the first refusal: InvalidArgument (a
// field: its message starts with the field path), NotFound (a dataset, base_model or
// init_from.job that does not exist), FailedPrecondition (a model folder without config.json; an
// init_from job that has not ended or kept no such checkpoint), ResourceExhausted (the memory
// estimate exceeds every worker; the message names the estimate in GiB and the largest worker
// memory).
absl::StatusOr<v1::JobSpec> AdmitJob(const v1::CreateJobRequest& request,
                                     AdmissionSources& sources);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_JOB_ADMISSION_H_
