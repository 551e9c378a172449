// Loading a RoBERTa Hugging Face folder (config.json with model_type roberta + model.safetensors
// or shards, F32/BF16/F16) into model::Roberta. Keys carry RobertaForSequenceClassification's
// "roberta." prefix or not (a checkpoint saved from RobertaModel); a masked-LM checkpoint's
// lm_head.*, the pooler and the old position_ids buffer are ignored. A classifier the checkpoint
// lacks is initialised as transformers does (weights N(0, 0.02), biases 0).
#ifndef PEFTD_WORKER_MODEL_ROBERTA_LOADER_H_
#define PEFTD_WORKER_MODEL_ROBERTA_LOADER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "worker/model/hf_loader.h"
#include "worker/model/roberta.h"

namespace peftd::model {

// `options.num_labels` > 0 builds a classifier of that many classes (ConfigForNumLabels); 0 keeps
// config.json's, which must then be a RobertaForSequenceClassification checkpoint.
absl::StatusOr<Roberta> LoadRoberta(const std::string& model_dir, const LoadOptions& options = {});

// Copies `files` into `model`: every encoder parameter must be present with its shape; a tensor
// the model does not have is refused by name (except those ignored above).
absl::Status LoadRobertaWeights(RobertaImpl& model, const safetensors::ShardedFiles& files,
                                uint64_t seed);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_ROBERTA_LOADER_H_
