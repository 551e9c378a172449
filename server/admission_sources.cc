#include "server/admission_sources.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/field_violation.h"
#include "server/model_root.h"

namespace peftd::server {

ServerAdmissionSources::ServerAdmissionSources(std::string model_root, storage::JobStore* store,
                                               std::vector<LiveWorker> live_workers,
                                               int64_t local_host_bytes)
    : model_root_(std::move(model_root)),
      store_(store),
      live_workers_(std::move(live_workers)),
      local_host_bytes_(local_host_bytes) {}

absl::StatusOr<model::ModelConfig> ServerAdmissionSources::ReadModelConfig(
    const std::string& base_model) {
  absl::StatusOr<std::string> dir = ResolveModelPath(model_root_, base_model);
  RETURN_IF_ERROR(WithFieldViolation(dir.status(), "base_model"));
  absl::StatusOr<model::ModelConfig> config = model::ReadModelConfig(*dir);
  if (!config.ok()) {
    // The folder is there but its config.json is not one the worker could build a model from.
    return WithFieldViolation(
        absl::FailedPreconditionError(absl::StrCat(
            "base_model: '", base_model, "' cannot be trained: ", config.status().message())),
        "base_model");
  }
  return config;
}

absl::StatusOr<v1::Dataset> ServerAdmissionSources::GetDataset(const std::string& id) {
  return store_->GetDataset(id);
}

absl::StatusOr<v1::Job> ServerAdmissionSources::GetJob(const std::string& id) {
  return store_->GetJob(id);
}

std::optional<WorkerMemory> ServerAdmissionSources::LargestWorkerMemory() {
  return server::LargestWorkerMemory(live_workers_, local_host_bytes_);
}

}  // namespace peftd::server
