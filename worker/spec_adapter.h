// From a job spec to what the training engine takes: the adapter config, the trainer's options,
// the dataset options and the few numbers the runner needs (batch size, seed, threads). Every
// JobSpec field lands in exactly one of them; defaults are the spec's (common/job_spec.h), and
// the ones that depend on the run's length (total steps, warmup from a ratio, AdaDHP's tfinal)
// are resolved here.
#ifndef PEFTD_WORKER_SPEC_ADAPTER_H_
#define PEFTD_WORKER_SPEC_ADAPTER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "adapters/peft_model.h"
#include "peftd/v1/job.pb.h"
#include "worker/data/dataset.h"
#include "worker/train/trainer.h"

namespace peftd::worker {

struct RunPlan {
  adapters::AdapterConfig adapter;  // AdaDHP target_num 0 = half the adapted modules (Apply)
  train::TrainerOptions trainer;    // checkpoint_dir is the runner's to set
  data::DatasetOptions dataset;
  int64_t batch_size = 8;  // training and evaluation micro-batches
  uint64_t seed = 42;      // adapter init, dropout, data order, classification head init
  int num_threads = 1;     // LibTorch intra-op threads
  bool classification = false;
  int num_labels = 0;  // SEQ_CLS only
  // Causal LM: several records per max_seq_len row (data::PackExamples); off, batches group
  // records of close lengths (train::MemoryBatchSource's group_by_length).
  bool packing = false;
};

// What the datasets are read with; needs no record count.
data::DatasetOptions DatasetOptionsFromSpec(const v1::JobSpec& spec);

// Optimizer steps of the run: max_steps when > 0, else epochs × (micro-batches per epoch /
// gradient_accumulation_steps), at least 1 (HF Trainer's rule: a last partial accumulation
// window of an epoch is not a step).
int64_t TotalSteps(const v1::JobSpec& spec, int64_t train_records);

// `spec` must have been through WithDefaults and ValidateJobSpec. `train_records` is the number
// of training examples (packed rows when packing); `hardware_threads` is used when the spec leaves
// num_threads at 0. InvalidArgument naming the field for what only the run's length can tell (an
// AdaLoRA schedule that never prunes, an AdaDHP tfinal past the end).
absl::StatusOr<RunPlan> PlanRun(const v1::JobSpec& spec, int64_t train_records,
                                int hardware_threads);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_SPEC_ADAPTER_H_
