// The scheduler's AdmissionSources: models under the model root (config.json only), datasets and
// jobs from the job store, and the memory the live workers advertised (a snapshot taken per
// request).
#ifndef PEFTD_SERVER_ADMISSION_SOURCES_H_
#define PEFTD_SERVER_ADMISSION_SOURCES_H_

#include <string>
#include <vector>

#include "server/job_admission.h"
#include "storage/job_store.h"

namespace peftd::server {

class ServerAdmissionSources : public AdmissionSources {
 public:
  // `store` must outlive this object. `local_host_bytes` > 0: the server runs local workers on
  // this host with that much usable memory (counts while none of them has registered).
  ServerAdmissionSources(std::string model_root, storage::JobStore* store,
                         std::vector<LiveWorker> live_workers, int64_t local_host_bytes);

  absl::StatusOr<model::ModelConfig> ReadModelConfig(const std::string& base_model) override;
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override;
  std::optional<WorkerMemory> LargestWorkerMemory() override;
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override;

 private:
  const std::string model_root_;
  storage::JobStore* const store_;
  const std::vector<LiveWorker> live_workers_;
  const int64_t local_host_bytes_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_ADMISSION_SOURCES_H_
