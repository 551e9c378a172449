// Loading a Hugging Face model folder: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. Weights are read from the memory-mapped files straight into the
// module's parameters, converted to the compute dtype one tensor at a time (never held twice).
#ifndef PEFTD_WORKER_MODEL_HF_LOADER_H_
#define PEFTD_WORKER_MODEL_HF_LOADER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "worker/model/llama.h"

namespace peftd::model {

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
  uint64_t seed = 42;  // initialises a classification head the checkpoint lacks
  // > 0: build a sequence-classification model with this many classes whatever config.json says
  // (a causal-LM checkpoint's lm_head is then ignored and `score` initialised, as HF's
  // AutoModelForSequenceClassification does).
  int64_t num_labels = 0;
};

// cuda:0 when LibTorch sees a GPU, else the CPU.
torch::Device DefaultDevice();

absl::StatusOr<Llama> LoadLlama(const std::string& model_dir, const LoadOptions& options = {});

// Copies `files` into `model`. Every base parameter must be present with its exact shape;
// tensors the model does not have are refused by name, except lm_head.weight of a tied model and
// rotary buffers. A missing `score.weight` is initialised N(0, 0.02) as HF does.
absl::Status LoadWeights(LlamaImpl& model, const safetensors::ShardedFiles& files, uint64_t seed);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_HF_LOADER_H_
