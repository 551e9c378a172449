// One tokenized training or evaluation example: what datasets produce and batches are made of.
// LibTorch-free, so dataset code and its tests compile without LibTorch.
#ifndef PEFTD_WORKER_DATA_EXAMPLE_H_
#define PEFTD_WORKER_DATA_EXAMPLE_H_

#include <cstdint>
#include <vector>

namespace peftd::data {

// Token ids, and labels aligned with them (HF convention: the loss of position t predicts
// labels[t + 1]; −100 = no loss) or a class label.
struct Example {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;  // causal LM; empty = same as input_ids
  int64_t class_label = -1;     // SEQ_CLS
  // A packed row (worker/data/packing.h) holds several records: where each one starts, the first
  // at 0. Empty = one record. The first label of every record is −100, so no position predicts
  // the next record's first token.
  std::vector<int32_t> record_starts;
  // SEQ_2_SEQ_LM: the target's ids (EOS included), which the decoder predicts, each a loss
  // position; input_ids are then the encoder's. Empty for the other tasks.
  std::vector<int64_t> target_ids;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_EXAMPLE_H_
