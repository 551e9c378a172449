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
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_EXAMPLE_H_
