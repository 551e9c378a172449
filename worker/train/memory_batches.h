// Batches from examples held in memory: the deterministic, resumable order every batch source
// follows (a seeded shuffle per epoch; position = epoch and index).
#ifndef PEFTD_WORKER_TRAIN_MEMORY_BATCHES_H_
#define PEFTD_WORKER_TRAIN_MEMORY_BATCHES_H_

#include <cstdint>
#include <vector>

#include "worker/data/example.h"
#include "worker/train/batch.h"

namespace peftd::train {

using data::Example;

// Pads a list of examples to the longest (right padding with `pad_id`) into a Batch; examples with
// target_ids (SEQ_2_SEQ_LM) go through CollateSeq2Seq.
Batch Collate(const std::vector<const Example*>& examples, int64_t pad_id, bool classification);

class MemoryBatchSource : public BatchSource {
 public:
  // With `group_by_length`, each epoch's shuffled order is cut into mega-batches of 50 batches,
  // each sorted by length, longest first (HF's LengthGroupedSampler): a batch pads to a length
  // close to its records'.
  MemoryBatchSource(std::vector<Example> examples, int64_t batch_size, int64_t pad_id,
                    uint64_t seed, bool classification = false, bool group_by_length = false);
  // Data-parallel training: the order is cut into global batches of batch_size x world_size
  // records (BatchesPerEpoch, Epoch and Position count global batches), and Next returns this
  // rank's share: rows [rank·n/world, (rank+1)·n/world) of a global batch of n records. The ranks'
  // shards together are exactly the batch one process with batch_size x world_size would read.
  void SetShard(int rank, int world_size);

  Batch Next() override;
  double Epoch() const override;
  int64_t BatchesPerEpoch() const override;
  std::map<std::string, int64_t> Position() const override;
  absl::Status Restore(const std::map<std::string, int64_t>& position) override;

 private:
  void Shuffle();
  std::vector<Example> examples_;
  int64_t batch_size_, pad_id_;
  uint64_t seed_;
  bool classification_;
  bool group_by_length_;
  int shard_rank_ = 0, shard_world_ = 1;
  int64_t GlobalBatch() const { return batch_size_ * shard_world_; }
  std::vector<size_t> order_;
  int64_t epoch_ = 0, index_ = 0;  // next batch: order_[index_ * GlobalBatch() ...] of epoch_
};

class MemoryEvalSource : public EvalSource {
 public:
  MemoryEvalSource(std::vector<Example> examples, int64_t batch_size, int64_t pad_id,
                   bool classification = false);
  int64_t NumBatches() const override;
  Batch Get(int64_t index) const override;

 private:
  std::vector<Example> examples_;
  int64_t batch_size_, pad_id_;
  bool classification_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_MEMORY_BATCHES_H_
