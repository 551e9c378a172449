// Job files of `peftd-worker train`: a JobSpec in protobuf JSON form (proto/peftd/v1/job.proto;
// field names as written there or in lowerCamelCase, enums by name), e.g.
//   {"base_model": "tiny-llama", "method": "LORA", "lora": {"r": 8},
//    "training_dataset_id": "train.jsonl", "max_steps": 100}
#ifndef PEFTD_WORKER_JOB_FILE_H_
#define PEFTD_WORKER_JOB_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "peftd/v1/job.pb.h"

namespace peftd::worker {

// Parses JSON text; `name` (the file) starts every error message. Unknown fields are refused
// by name: a misspelt field silently left at its default would train the wrong job.
absl::StatusOr<v1::JobSpec> ParseJobSpecJson(const std::string& text, const std::string& name);

// Reads and parses a job file. NOT_FOUND when it cannot be read.
absl::StatusOr<v1::JobSpec> ReadJobFile(const std::string& path);

// The spec as pretty-printed protobuf JSON (what `train` keeps in its output folder).
std::string JobSpecToJson(const v1::JobSpec& spec);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_JOB_FILE_H_
