// `peftd-worker tokenize DATA --model DIR [--max-seq-len N] [--chat-template T] [--no-truncate]
// [--num-labels N] [--record K] [--json]`: how a dataset tokenizes under a model, the way a job
// would read it (data::LoadDataset), reported by data::InspectDataset. `peftctl datasets inspect`
// runs it. Exit 0, or 1 with the error (a bad line names its line) on stderr.
#ifndef PEFTD_WORKER_TOKENIZE_COMMAND_H_
#define PEFTD_WORKER_TOKENIZE_COMMAND_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "worker/data/dataset_report.h"

namespace peftd::worker {

struct TokenizeCommandOptions {
  std::string data_file;
  std::string model_dir;
  int64_t max_seq_len = 512;  // JobSpec defaults
  std::string chat_template = "chatml";
  bool truncate = true;
  int num_labels = 0;  // > 0: SEQ_CLS
  int64_t record = 0;  // the record rendered
  uint64_t seed = 42;  // packing
  bool json = false;
};

absl::StatusOr<data::DatasetReport> RunTokenize(const TokenizeCommandOptions& options);

// RunTokenize for the command line: prints the report, returns the exit code.
int RunTokenizeCommand(const TokenizeCommandOptions& options);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_TOKENIZE_COMMAND_H_
