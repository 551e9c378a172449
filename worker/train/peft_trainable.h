// The parts of a trainable PEFT model that do not depend on the model family: which adapter
// tensors get weight decay, and the per-step and evaluation statistics of the method (gate
// sparsity and τ, AdaLoRA ranks, AdaDHP's active modules, the module norms of norm_probe.h).
// Every model family's trainable (PeftLlama, PeftGpt2) reports through them.
#ifndef PEFTD_WORKER_TRAIN_PEFT_METRICS_H_
#define PEFTD_WORKER_TRAIN_PEFT_METRICS_H_

#include <vector>

#include "adapters/peft_model.h"
#include "worker/train/trainer.h"

namespace peftd::train {

// The adapter's trainable tensors; as HF Trainer, no weight decay on biases (nor HUT's β).
std::vector<TrainableTensor> PeftTrainable(adapters::PeftModel& peft);
void FillPeftStepMetrics(adapters::PeftModel& peft, StepMetrics* metrics);
void FillPeftEvalMetrics(adapters::PeftModel& peft, EvalMetrics* metrics);

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_METRICS_H_
