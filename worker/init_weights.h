// Continue training (JobSpec.init_from): a fresh run's trainable weights set from another job's
// adapter folder or checkpoint before its first step. The server has checked that the shapes
// agree; a mismatch found here is still refused with the tensor it concerns.
#ifndef PEFTD_WORKER_INIT_WEIGHTS_H_
#define PEFTD_WORKER_INIT_WEIGHTS_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "adapters/peft_model.h"
#include "worker/job_runner.h"
#include "worker/train/trainer.h"

namespace peftd::worker {

// Loads `init` into `model` with its adapters `peft` (an adapter folder:
// adapters::LoadAdapterWeights; a checkpoint: Trainer::InitWeightsFrom) and logs where the weights
// came from.
absl::Status ApplyInitWeights(const InitWeights& init, torch::nn::Module& model,
                              adapters::PeftModel& peft, train::Trainer& trainer,
                              train::ProgressSink* sink);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_INIT_WEIGHTS_H_
