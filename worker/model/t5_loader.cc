#include "worker/model/t5_loader.h"

#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"
#include "worker/model/checkpoint_copy.h"

namespace peftd::model {
namespace {

constexpr const char* kTiedEmbeddings[] = {"encoder.embed_tokens.weight",
                                           "decoder.embed_tokens.weight"};

// The checkpoint key of parameter `name`: itself, or for `shared` one of its tied copies.
std::string KeyIn(const safetensors::ShardedFiles& files, const std::string& name) {
  if (files.contains(name) || name != "shared.weight") return name;
  for (const char* key : kTiedEmbeddings) {
    if (files.contains(key)) return key;
  }
  return name;
}

}  // namespace

absl::Status LoadT5Weights(T5Impl& model, const safetensors::ShardedFiles& files) {
  CheckpointMapping mapping;
  mapping.key = [&](const std::string& name) { return KeyIn(files, name); };
  mapping.ignored = [&](const std::string& key) {
    return key == kTiedEmbeddings[0] || key == kTiedEmbeddings[1] ||
           (key == "lm_head.weight" && model.config().tie_word_embeddings);
  };
  return CopyCheckpoint(model, files, mapping);
}

absl::StatusOr<T5> LoadT5(const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(model_dir));
  if (!config.IsT5()) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": config.json: architectures: '",
                                                   config.architecture,
                                                   "' is not T5ForConditionalGeneration"));
  }
  if (options.num_labels > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": T5 trains as a sequence-to-sequence LM only (no sequence classification)"));
  }
  T5 model(config);
  ASSIGN_OR_RETURN(safetensors::ShardedFiles files, safetensors::ShardedFiles::OpenDir(model_dir));
  RETURN_IF_ERROR(Annotate(LoadT5Weights(*model, files), model_dir));
  model->to(options.device, options.dtype);
  return model;
}

}  // namespace peftd::model
