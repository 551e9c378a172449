// Loading a GPT-2 Hugging Face folder (config.json with model_type gpt2 + model.safetensors or
// shards, F32/BF16/F16) into model::Gpt2. Conv1D weights (stored (in, out)) are copied transposed
// into the Linear layout; the keys may carry GPT2LMHeadModel's "transformer." prefix or not (the
// original gpt2 checkpoints are saved from GPT2Model), and the attention's causal-mask buffers
// that older checkpoints hold (attn.bias, attn.masked_bias) are ignored.
#ifndef PEFTD_WORKER_MODEL_GPT2_LOADER_H_
#define PEFTD_WORKER_MODEL_GPT2_LOADER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "worker/model/gpt2.h"
#include "worker/model/hf_loader.h"

namespace peftd::model {

// `options.num_labels` must be 0: GPT-2 trains as a causal LM only.
absl::StatusOr<Gpt2> LoadGpt2(const std::string& model_dir, const LoadOptions& options = {});

// Copies `files` into `model`: every base parameter must be present with its shape (Conv1D
// weights as (in, out)); a tensor the model does not have is refused by name.
absl::Status LoadGpt2Weights(Gpt2Impl& model, const safetensors::ShardedFiles& files);

// Whether the parameter `name` of model::Gpt2 is a Conv1D weight (stored transposed).
bool IsConv1DWeight(const std::string& name);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_GPT2_LOADER_H_
