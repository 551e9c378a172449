// Loading a T5 Hugging Face folder (config.json with model_type t5 + model.safetensors or shards,
// F32/BF16/F16) into model::T5. encoder.embed_tokens and decoder.embed_tokens are `shared` in
// transformers (tied), so a checkpoint that saves them too has them ignored, and `shared` may be
// read from encoder.embed_tokens when a checkpoint saves only that; lm_head.weight of a tied model
// is ignored as well.
#ifndef PEFTD_WORKER_MODEL_T5_LOADER_H_
#define PEFTD_WORKER_MODEL_T5_LOADER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "worker/model/hf_loader.h"
#include "worker/model/t5.h"

namespace peftd::model {

// `options.num_labels` must be 0: T5 trains as a sequence-to-sequence LM only.
absl::StatusOr<T5> LoadT5(const std::string& model_dir, const LoadOptions& options = {});

// Copies `files` into `model`: every base parameter must be present with its shape; a tensor the
// model does not have is refused by name.
absl::Status LoadT5Weights(T5Impl& model, const safetensors::ShardedFiles& files);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_T5_LOADER_H_
