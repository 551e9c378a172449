#include "worker/model/roberta_loader.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/model_modules.h"
#include "common/status.h"
#include "worker/model/checkpoint_copy.h"

namespace peftd::model {
namespace {

// Tensors of other heads and buffers that RobertaForSequenceClassification does not use.
bool Ignored(const std::string& key) {
  return absl::StartsWith(key, "lm_head.") || absl::StartsWith(key, "roberta.pooler.") ||
         absl::StartsWith(key, "pooler.") || absl::EndsWith(key, "embeddings.position_ids");
}

}  // namespace

absl::Status LoadRobertaWeights(RobertaImpl& model, const safetensors::ShardedFiles& files,
                                uint64_t seed) {
  CheckpointMapping mapping;
  mapping.key = [&](const std::string& name) {
    return KeyWithOrWithoutPrefix(files, name, "roberta.");
  };
  bool seeded = false;
  mapping.init_missing = [&](const std::string& name, torch::Tensor& param) {
    if (!absl::StartsWith(name, "classifier.")) return false;
    // RobertaPreTrainedModel._init_weights: Linear weights N(0, initializer_range), biases 0.
    if (!seeded) torch::manual_seed(seed), seeded = true;
    if (absl::EndsWith(name, ".bias")) {
      param.zero_();
    } else {
      param.normal_(0.0, 0.02);
    }
    return true;
  };
  mapping.ignored = Ignored;
  return CopyCheckpoint(model, files, mapping);
}

absl::StatusOr<Roberta> LoadRoberta(const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(model_dir));
  if (!config.IsRoberta()) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": config.json: architectures: '",
                                                   config.architecture, "' is not RoBERTa"));
  }
  config = ConfigForNumLabels(std::move(config), options.num_labels);
  if (!config.sequence_classification) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": ", config.architecture,
        " has no classifier: RoBERTa trains as a sequence classifier (task SEQ_CLS, num_labels)"));
  }
  Roberta model(config);
  ASSIGN_OR_RETURN(safetensors::ShardedFiles files, safetensors::ShardedFiles::OpenDir(model_dir));
  RETURN_IF_ERROR(Annotate(LoadRobertaWeights(*model, files, options.seed), model_dir));
  model->to(options.device, options.dtype);
  return model;
}

}  // namespace peftd::model
