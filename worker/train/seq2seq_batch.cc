#include "worker/train/seq2seq_batch.h"

#include <algorithm>

namespace peftd::train {

Batch CollateSeq2Seq(const std::vector<const data::Example*>& examples, int64_t pad_id) {
  const int64_t b = static_cast<int64_t>(examples.size());
  int64_t t = 1, u = 1;
  for (const data::Example* e : examples) {
    t = std::max<int64_t>(t, static_cast<int64_t>(e->input_ids.size()));
    u = std::max<int64_t>(u, static_cast<int64_t>(e->target_ids.size()));
  }
  Batch batch;
  batch.input_ids = torch::full({b, t}, pad_id, torch::kLong);
  batch.attention_mask = torch::zeros({b, t}, torch::kLong);
  batch.labels = torch::full({b, u}, -100, torch::kLong);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto labels = batch.labels.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const data::Example& e = *examples[i];
    for (size_t j = 0; j < e.input_ids.size(); ++j) {
      ids[i][j] = e.input_ids[j];
      mask[i][j] = 1;
    }
    for (size_t j = 0; j < e.target_ids.size(); ++j) labels[i][j] = e.target_ids[j];
    batch.num_tokens += static_cast<int64_t>(e.input_ids.size() + e.target_ids.size());
    batch.num_targets += static_cast<int64_t>(e.target_ids.size());
  }
  return batch;
}

}  // namespace peftd::train
