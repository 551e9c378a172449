// The trainer's model for a job, whatever the family: the base model loaded from its folder with
// the job's adapters attached (PeftLlama for the LLaMA family, PeftGpt2 for GPT-2, PeftT5 for T5).
#ifndef PEFTD_WORKER_LOAD_TRAINABLE_H_
#define PEFTD_WORKER_LOAD_TRAINABLE_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "adapters/peft_model.h"
#include "common/model_config.h"
#include "worker/model/hf_loader.h"
#include "worker/train/peft_deberta_v2.h"
#include "worker/train/peft_llama.h"
#include "worker/train/peft_roberta.h"
#include "worker/train/trainer.h"

namespace peftd::worker {

struct LoadedTrainable {
  std::unique_ptr<train::TrainableModel> trainable;
  adapters::PeftModel* peft = nullptr;    // owned by `trainable`
  torch::nn::Module* model = nullptr;     // the base model with its adapters, owned by `trainable`
  train::PeftLlama* llama = nullptr;      // the same object for the LLaMA family, else null
  train::PeftRoberta* roberta = nullptr;  // the same object for RoBERTa, else null
  train::PeftDebertaV2* deberta = nullptr;  // the same object for DeBERTa-v2/v3, else null
};

// Loads `model_dir` (whose config.json is `config`; loading errors are annotated with `what`) and
// applies `adapter`; the adapter's initialisation draws from `seed` alone. GPT-2 sets
// fan_in_fan_out in the adapter's config, as PEFT does for Conv1D layers; RoBERTa and DeBERTa
// save their classifier as PEFT's modules_to_save ["classifier"].
absl::StatusOr<LoadedTrainable> LoadTrainable(const std::string& model_dir,
                                              const model::ModelConfig& config,
                                              const std::string& what,
                                              const model::LoadOptions& load,
                                              adapters::AdapterConfig adapter, int64_t total_steps,
                                              uint64_t seed);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_LOAD_TRAINABLE_H_
