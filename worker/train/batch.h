// A micro-batch as the trainer sees it, and where batches come from.
#ifndef PEFTD_WORKER_TRAIN_BATCH_H_
#define PEFTD_WORKER_TRAIN_BATCH_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace peftd::train {

struct Batch {
  torch::Tensor input_ids;       // (B, T) int64
  torch::Tensor attention_mask;  // (B, T) int64, 1 = real token, 0 = padding
  torch::Tensor labels;          // causal LM: (B, T) int64, -100 = no loss; SEQ_CLS: (B) int64;
                                 // SEQ_2_SEQ_LM: the targets (B, T_target), -100 = padding
  int64_t num_tokens = 0;        // non-padding tokens (seq2seq: inputs and targets)
  int64_t num_targets = 0;       // positions (causal LM, seq2seq) or sequences (SEQ_CLS) with loss
  // Packed batches only, undefined otherwise. (B, T) int64: each token's position within its
  // record (RoPE restarts at every record), and the record it belongs to, numbered 0, 1, ... over
  // the batch in row-major order (the padding at a row's end counts as part of its last record,
  // whose queries never see it). Attention sees only real keys of the same record.
  torch::Tensor position_ids;
  torch::Tensor sequence_ids;
};

// An endless, deterministic stream of training batches (epoch after epoch), whose position can be
// saved in a checkpoint and restored.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch Next() = 0;
  // Fractional epochs consumed so far.
  virtual double Epoch() const = 0;
  // Batches per epoch.
  virtual int64_t BatchesPerEpoch() const = 0;
  virtual std::map<std::string, int64_t> Position() const = 0;
  virtual absl::Status Restore(const std::map<std::string, int64_t>& position) = 0;
};

// The validation set, read in full at every evaluation.
class EvalSource {
 public:
  virtual ~EvalSource() = default;
  virtual int64_t NumBatches() const = 0;
  virtual Batch Get(int64_t index) const = 0;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_BATCH_H_
