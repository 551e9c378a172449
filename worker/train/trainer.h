// The training loop: micro-batches with gradient accumulation, a padding-aware mean loss over the
// whole optimizer step, clipping, AdamW over the trainable tensors, the method's own per-step
// updates (AdaLoRA / AdaDHP allocators, token-gate τ), periodic evaluation, early stopping and
// checkpoints that resume bit-for-bit on CPU. Cancellation is checked at every micro-batch and
// inside evaluation and checkpointing.
#ifndef PEFTD_WORKER_TRAIN_TRAINER_H_
#define PEFTD_WORKER_TRAIN_TRAINER_H_

#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/adamw.h"
#include "worker/train/batch.h"
#include "worker/train/data_parallel.h"
#include "worker/train/gradient_buckets.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/progress.h"

namespace peftd::train {

// Summed loss of a micro-batch and, for classification, how many predictions were right.
struct LossOutput {
  torch::Tensor loss_sum;  // scalar: sum over the batch's targets (not yet divided)
  int64_t correct = -1;    // SEQ_CLS only
};

// The model side of training: forward to a summed loss, and the method's per-step hooks.
class TrainableModel {
 public:
  virtual ~TrainableModel() = default;
  virtual LossOutput Forward(const Batch& batch) = 0;
  // Tensors the optimizer updates (requires_grad at start), with their weight-decay flag.
  virtual std::vector<TrainableTensor> Trainable() = 0;
  virtual void SetTraining(bool training) = 0;
  // Added to the step's loss before backward (AdaLoRA orthogonality penalty); undefined = none.
  virtual torch::Tensor RegularizationLoss() { return {}; }
  // After backward, clipping and the AdamW step, before gradients are zeroed (METHODS.md: the
  // allocators read p and ∇p there; τ moves after the adapter's step). `step` is 1-based.
  virtual void AfterOptimizerStep(int64_t step) {}
  // Gate sparsity, AdaLoRA ranks, AdaDHP active modules for the step just done.
  virtual void FillStepMetrics(StepMetrics* metrics) {}
  // Starts / ends an evaluation window for gate statistics.
  virtual void BeginEval() {}
  virtual void EndEval(EvalMetrics* metrics) {}
  // Everything that changes in training besides the trainable tensors and AdamW's moments.
  // Writes the current weights as an adapter folder in `dir` (next to each checkpoint, so the
  // server can serve any kept step: `peftctl download JOB --step N`). Default: nothing.
  virtual absl::Status ExportAdapter(const std::string& dir) { return absl::OkStatus(); }
  virtual std::map<std::string, torch::Tensor> ExtraState() { return {}; }
  virtual absl::Status LoadExtraState(const std::map<std::string, torch::Tensor>& state) {
    return absl::OkStatus();
  }
  // Data-parallel training (TrainerOptions::data_parallel). Tensors the backward passes
  // accumulate besides the gradients (the token gates' τ gradient), summed over ranks in place
  // before AfterOptimizerStep; counters of the reporting window (gate sparsity), summed before
  // FillStepMetrics; a checksum of the method's masking decisions, which must agree on every rank.
  virtual std::vector<torch::Tensor> StepAccumulators() { return {}; }
  virtual std::vector<torch::Tensor> WindowCounters() { return {}; }
  virtual uint64_t DecisionChecksum() { return 0; }
};

struct TrainerOptions {
  int64_t total_steps = 1;
  int gradient_accumulation_steps = 1;
  LrScheduleOptions lr;
  AdamWOptions adamw;
  double max_grad_norm = 1.0;             // 0 disables clipping
  int64_t eval_interval_steps = 0;        // 0: evaluate at the end only
  int64_t checkpoint_interval_steps = 0;  // 0: no periodic checkpoints
  int early_stopping_patience = 0;        // evaluations without improvement; 0 = off
  std::string checkpoint_dir;             // where checkpoints go (one sub-folder per step)
  int keep_checkpoints = 2;               // newest N kept on disk
  uint64_t seed = 42;
  // Report to the sink every N steps (the window's metrics are averaged).
  int64_t log_every_steps = 1;
  // When the cancel flag is seen, finish the step under way and checkpoint it before returning
  // CANCELLED (the standalone `train` command: Ctrl-C keeps the work for --resume). Off: return
  // at the next micro-batch.
  bool checkpoint_on_cancel = false;
  // Data-parallel training over its ranks (not owned; null: one process). Every rank runs the
  // same Trainer over its own shard of each global batch (MemoryBatchSource::SetShard); the loss
  // is divided by the global target count, gradients and the method's accumulators are summed
  // over ranks once per optimizer step, so clipping, AdamW and the allocators see the global
  // gradient and every rank makes the same update. Rank 0 alone writes checkpoints; every rank
  // evaluates the whole validation set (the same weights give the same result). A cancel seen by
  // any rank stops every rank at the next step boundary (the step under way is finished).
  DataParallel* data_parallel = nullptr;
  // Data-parallel: the gradient sum starts bucket by bucket during the step's last backward pass
  // (worker/train/gradient_buckets.h). About this many bytes of gradient per bucket; 0: an eighth
  // of the gradient, within [256 KiB, 25 MiB] (AutoBucketBytes).
  int64_t allreduce_bucket_bytes = 0;
};

struct TrainResult {
  int64_t steps = 0;
  int64_t tokens_seen = 0;
  double final_train_loss = 0;
  std::optional<double> final_eval_loss;
  std::optional<double> final_eval_accuracy;
  double final_gate_sparsity = 0;
  bool stopped_early = false;
  std::vector<double> losses;  // per optimizer step of this process (resume tests compare them)
  double train_seconds = 0;
  // Data-parallel, this rank: seconds it waited for collectives (what overlapping did not hide),
  // seconds collectives ran in all, the gradient bytes summed per step and in how many buckets.
  double allreduce_seconds = 0;
  double allreduce_busy_seconds = 0;
  int64_t allreduce_gradient_bytes = 0;
  int allreduce_buckets = 0;
};

class Trainer {
 public:
  // Nothing is owned; every pointer must outlive Run(). `eval` and `sink` may be null.
  Trainer(TrainerOptions options, TrainableModel* model, BatchSource* train, const EvalSource* eval,
          ProgressSink* sink, const std::atomic<bool>* cancelled);

  // Trains to total_steps, resuming from `resume_checkpoint` when given. CANCELLED when the
  // cancel flag was seen; RESOURCE_EXHAUSTED on out-of-memory naming the batch size.
  absl::StatusOr<TrainResult> Run(const std::optional<std::string>& resume_checkpoint);

  // Evaluates on the whole validation set.
  absl::StatusOr<EvalMetrics> Evaluate(int64_t step);

  // Continue training (JobSpec.init_from): sets the trainable tensors and the model's extra state
  // (gate τ, AdaLoRA's masks) from the checkpoint in `dir` of another run of the same shapes; the
  // optimizer, the schedule, the RNG and the data start fresh. Call before Run() (without a
  // resume checkpoint). InvalidArgument naming a missing or mis-shaped tensor.
  absl::Status InitWeightsFrom(const std::string& dir);

 private:
  absl::Status SaveCheckpoint(int64_t step, bool even_if_cancelled = false);
  absl::Status LoadCheckpoint(const std::string& dir);
  bool Cancelled() const { return cancelled_ && cancelled_->load(std::memory_order_relaxed); }
  void Log(LogLevel level, const std::string& message);

  TrainerOptions options_;
  TrainableModel* model_;
  BatchSource* train_;
  const EvalSource* eval_;
  ProgressSink* sink_;
  const std::atomic<bool>* cancelled_;
  std::unique_ptr<AdamW> optimizer_;

  // Progress that a checkpoint captures.
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
  double best_eval_loss_ = 0;
  bool has_best_eval_ = false;
  int evals_without_improvement_ = 0;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_TRAINER_H_
