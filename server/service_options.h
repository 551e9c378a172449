// What the gRPC services need beyond the scheduler: the token, the limits and the model root.
#ifndef PEFTD_SERVER_SERVICE_OPTIONS_H_
#define PEFTD_SERVER_SERVICE_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace peftd::server {

struct ServiceOptions {
  std::string auth_token;    // users' token, JobService and reflection; empty: none
  std::string worker_token;  // workers' token, WorkerService; empty: none
  std::string model_root;
  int64_t max_dataset_bytes = int64_t{1} << 30;  // UploadDataset
  int64_t max_upload_bytes = int64_t{16} << 30;  // UploadCheckpoint / UploadAdapter
  absl::Duration watch_poll = absl::Seconds(1);  // how often WatchJob notices a gone client
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_SERVICE_OPTIONS_H_
