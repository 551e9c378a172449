// What a dataset becomes under a model's tokenizer, for a user to check before a long run
// (`peftd-worker tokenize`, `peftctl datasets inspect`): records, tokens, the tokens that carry
// loss, truncation, how well packing fills rows, and one record rendered with its loss mask.
// LibTorch-free.
#ifndef PEFTD_WORKER_DATA_DATASET_REPORT_H_
#define PEFTD_WORKER_DATA_DATASET_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "worker/data/dataset.h"
#include "worker/data/tokenizer.h"

namespace peftd::data {

struct DatasetReport {
  std::string format;
  int64_t records = 0;
  int64_t tokens = 0;
  // Positions trained on: a token whose label is not −100, the first of a record excepted
  // (nothing precedes it). The trainer's num_targets.
  int64_t loss_tokens = 0;
  int64_t truncated_records = 0;
  int64_t skipped_lines = 0;
  int64_t max_seq_len = 0;
  int64_t longest_record = 0;
  // Packing (causal LM): rows of max_seq_len and the share of their positions that are tokens.
  int64_t packed_rows = 0;
  double packing_efficiency = 0;
  // One record, token by token.
  struct Token {
    int64_t id = 0;
    std::string text;
    bool loss = false;
  };
  int64_t sample_index = 0;  // 0-based, among the records kept
  std::vector<Token> sample;
};

// `sample_index` picks the rendered record (clamped to the last one); `seed` is the packing seed.
DatasetReport InspectDataset(const LoadedDataset& dataset, const Tokenizer& tokenizer,
                             const DatasetOptions& options, int64_t sample_index, uint64_t seed);

nlohmann::json ReportJson(const DatasetReport& report);
// Aligned lines for a terminal; the sample's loss-carrying tokens are between ⟦ and ⟧.
std::string ReportText(const DatasetReport& report);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_DATASET_REPORT_H_
