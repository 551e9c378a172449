// INTERIM (branch runner): the dataset contract as agreed with branch `data`, so the job runner
// builds before that branch lands. On merge, branch `data`'s header replaces this one and
// worker/data/interim_loaders.cc is deleted.
#ifndef PEFTD_WORKER_DATA_DATASET_H_
#define PEFTD_WORKER_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/example.h"
#include "worker/data/tokenizer.h"

namespace peftd::data {

// One bad line (1-based); `field` empty when the whole line is at fault.
struct LineError {
  int64_t line = 0;
  std::string field;
  std::string reason;
};

enum class Task { kCausalLm, kSequenceClassification };

struct DatasetOptions {
  Task task = Task::kCausalLm;
  int64_t max_seq_len = 512;
  bool truncate = true;
  bool skip_bad_lines = false;
  std::string chat_template = "chatml";
  int num_labels = 0;
  std::vector<std::string> label_names;
};

struct DatasetStats {
  int64_t records = 0, tokens = 0, truncated_records = 0, skipped_lines = 0;
};

struct LoadedDataset {
  std::vector<Example> examples;
  DatasetStats stats;
  std::string format;
};

absl::StatusOr<LoadedDataset> LoadDataset(const std::string& path, const Tokenizer& tokenizer,
                                          const DatasetOptions& options,
                                          std::vector<LineError>* errors = nullptr);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_DATASET_H_
