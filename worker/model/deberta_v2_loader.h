// Loading a DeBERTa-v2/v3 Hugging Face folder (config.json with model_type deberta-v2 +
// model.safetensors or shards, F32/BF16/F16) into model::DebertaV2. Keys carry
// DebertaV2ForSequenceClassification's "deberta." prefix or not (a checkpoint saved from
// DebertaV2Model); the masked-LM heads (lm_predictions.*, mask_predictions.*, cls.*, lm_head.*),
// the position_ids buffer and position embeddings the config does not add to the input
// (position_biased_input false) are ignored. A pooler or classifier the checkpoint lacks (every
// pre-trained DeBERTa-v3) is initialised as transformers does (weights N(0, 0.02), biases 0).
#ifndef PEFTD_WORKER_MODEL_DEBERTA_V2_LOADER_H_
#define PEFTD_WORKER_MODEL_DEBERTA_V2_LOADER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "worker/model/deberta_v2.h"
#include "worker/model/hf_loader.h"

namespace peftd::model {

// `options.num_labels` > 0 builds a classifier of that many classes (ConfigForNumLabels); 0 keeps
// config.json's, which must then be a DebertaV2ForSequenceClassification checkpoint.
absl::StatusOr<DebertaV2> LoadDebertaV2(const std::string& model_dir,
                                        const LoadOptions& options = {});

// Copies `files` into `model`: every encoder parameter must be present with its shape; a tensor
// the model does not have is refused by name (except those ignored above).
absl::Status LoadDebertaV2Weights(DebertaV2Impl& model, const safetensors::ShardedFiles& files,
                                  uint64_t seed);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_DEBERTA_V2_LOADER_H_
