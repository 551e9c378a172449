// The worker's JobRunner: one job from its spec to an exported adapter. Loads the base model
// (from the model root, never outside it) and its tokenizer, reads and checks the datasets,
// applies the method, trains with evaluation and checkpoints (resuming from a given checkpoint),
// then exports the adapter folder and, when asked and possible, a merged model folder.
//
// Layout of inputs.work_dir: checkpoints/step-NNNNNNNN/checkpoint.safetensors (the newest two),
// adapter/ (PEFT layout), merged/ (config.json, tokenizer files, model.safetensors).
//
// Errors carry canonical codes: INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION for the
// spec, the model or the data (they name the field, the file or the dataset line),
// RESOURCE_EXHAUSTED when the job's memory estimate exceeds the host's usable memory (checked
// before the model is loaded) or memory runs out (naming the batch size), CANCELLED when
// `cancelled` was set, INTERNAL for the rest. LibTorch exceptions never escape.
#ifndef PEFTD_WORKER_RUN_JOB_H_
#define PEFTD_WORKER_RUN_JOB_H_

#include <atomic>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/job_runner.h"
#include "worker/train/progress.h"

namespace peftd::train {
class DataParallel;  // worker/train/data_parallel.h
}  // namespace peftd::train

namespace peftd::worker {

struct RunJobOptions {
  // Evaluate once before the first step (not after a resume), so the log shows where eval loss
  // started.
  bool eval_before_training = true;
  // Ctrl-C in `peftd-worker train`: finish the step and checkpoint it before stopping.
  bool checkpoint_on_cancel = false;
  // Memory the job's estimate must fit (common/memory_estimate.h), in bytes; 0 = the host's
  // UsableMemoryBytes(). Tests set a small one.
  int64_t memory_limit_bytes = 0;
  // Data-parallel training (not owned; null: one process): this rank reads its shard of each
  // global batch; rank 0 alone writes checkpoints and exports the adapter (the others return
  // with an empty adapter_dir).
  train::DataParallel* data_parallel = nullptr;
};

// Runs the job. `sink` may be null. Thread-compatible: one job per call, but LibTorch's thread
// count is process-wide (the last job started sets it).
absl::StatusOr<JobOutputs> RunJob(const JobInputs& inputs, train::ProgressSink* sink,
                                  const std::atomic<bool>* cancelled,
                                  const RunJobOptions& options = {});

// RunJob as the lease loop's JobRunner.
JobRunner MakeJobRunner(RunJobOptions options = {});

// The model folder `base_model` names: a folder name or relative path under `model_root`, or an
// absolute path inside it. Symlinks are resolved before the check, so nothing outside the root
// can be reached. An empty `model_root` means no confinement (`peftd-worker train` without
// --model-root): the path is used as given. The built-in model name "tiny-llama" is written into
// the root on first use. INVALID_ARGUMENT for an escape, NOT_FOUND for a missing folder, both
// naming base_model.
absl::StatusOr<std::string> ResolveBaseModel(const std::string& model_root,
                                             const std::string& base_model);

// The newest complete checkpoint folder under `checkpoint_root` (step-N, not a .tmp left by a
// crash), or nullopt.
std::optional<std::string> NewestCheckpoint(const std::string& checkpoint_root);

// The step a checkpoint folder holds (from its name), or -1.
int64_t CheckpointStep(const std::string& checkpoint_dir);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_RUN_JOB_H_
