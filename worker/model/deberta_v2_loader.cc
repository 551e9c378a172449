#include "worker/model/deberta_v2_loader.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/model_modules.h"
#include "common/status.h"
#include "worker/model/checkpoint_copy.h"

namespace peftd::model {

absl::Status LoadDebertaV2Weights(DebertaV2Impl& model, const safetensors::ShardedFiles& files,
                                  uint64_t seed) {
  const bool positions_used = model.config().position_biased_input;
  CheckpointMapping mapping;
  mapping.key = [&](const std::string& name) {
    return KeyWithOrWithoutPrefix(files, name, "deberta.");
  };
  bool seeded = false;
  mapping.init_missing = [&](const std::string& name, torch::Tensor& param) {
    if (!absl::StartsWith(name, "classifier.") && !absl::StartsWith(name, "pooler.")) return false;
    // DebertaV2PreTrainedModel._init_weights: Linear weights N(0, initializer_range), biases 0.
    if (!seeded) torch::manual_seed(seed), seeded = true;
    if (absl::EndsWith(name, ".bias")) {
      param.zero_();
    } else {
      param.normal_(0.0, 0.02);
    }
    return true;
  };
  mapping.ignored = [positions_used](const std::string& key) {
    for (const char* head : {"lm_predictions.", "mask_predictions.", "cls.", "lm_head."}) {
      if (absl::StartsWith(key, head)) return true;
    }
    return absl::EndsWith(key, "embeddings.position_ids") ||
           (!positions_used && absl::EndsWith(key, "embeddings.position_embeddings.weight"));
  };
  return CopyCheckpoint(model, files, mapping);
}

absl::StatusOr<DebertaV2> LoadDebertaV2(const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(model_dir));
  if (!config.IsDebertaV2()) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": config.json: architectures: '",
                                                   config.architecture, "' is not DeBERTa-v2"));
  }
  config = ConfigForNumLabels(std::move(config), options.num_labels);
  if (!config.sequence_classification) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": ", config.architecture,
        " has no classifier: DeBERTa trains as a sequence classifier (task SEQ_CLS, num_labels)"));
  }
  DebertaV2 model(config);
  ASSIGN_OR_RETURN(safetensors::ShardedFiles files, safetensors::ShardedFiles::OpenDir(model_dir));
  RETURN_IF_ERROR(Annotate(LoadDebertaV2Weights(*model, files, options.seed), model_dir));
  model->to(options.device, options.dtype);
  return model;
}

}  // namespace peftd::model
