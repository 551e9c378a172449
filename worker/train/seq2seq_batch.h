// Batches of input/target examples (SEQ_2_SEQ_LM) for an encoder-decoder: the inputs padded as
// the encoder's input_ids and attention_mask, the targets as `labels` (B, T_target) padded with
// -100, which the model shifts right into the decoder's inputs (HF's _shift_right).
#ifndef PEFTD_WORKER_TRAIN_SEQ2SEQ_BATCH_H_
#define PEFTD_WORKER_TRAIN_SEQ2SEQ_BATCH_H_

#include <cstdint>
#include <vector>

#include "worker/data/example.h"
#include "worker/train/batch.h"

namespace peftd::train {

// Every example must carry target_ids. num_targets counts the target ids, num_tokens the input
// and target ids.
Batch CollateSeq2Seq(const std::vector<const data::Example*>& examples, int64_t pad_id);

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_SEQ2SEQ_BATCH_H_
