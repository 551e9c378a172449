#include "worker/model/gpt2_loader.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"
#include "worker/model/checkpoint_copy.h"

namespace peftd::model {
namespace {

// The causal-mask buffers of GPT2Attention in checkpoints of older transformers versions.
bool IsMaskBuffer(const std::string& key) {
  return absl::EndsWith(key, ".attn.bias") || absl::EndsWith(key, ".attn.masked_bias");
}

}  // namespace

bool IsConv1DWeight(const std::string& name) {
  return absl::EndsWith(name, ".c_attn.weight") || absl::EndsWith(name, ".c_proj.weight") ||
         absl::EndsWith(name, ".c_fc.weight");
}

absl::Status LoadGpt2Weights(Gpt2Impl& model, const safetensors::ShardedFiles& files) {
  CheckpointMapping mapping;
  mapping.key = [&](const std::string& name) {
    return KeyWithOrWithoutPrefix(files, name, "transformer.");
  };
  mapping.transposed = IsConv1DWeight;
  mapping.ignored = [&](const std::string& key) {
    return IsMaskBuffer(key) || (key == "lm_head.weight" && model.config().tie_word_embeddings);
  };
  return CopyCheckpoint(model, files, mapping);
}

absl::StatusOr<Gpt2> LoadGpt2(const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(model_dir));
  if (!config.IsGpt2()) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": config.json: architectures: '",
                                                   config.architecture,
                                                   "' is not GPT2LMHeadModel"));
  }
  if (options.num_labels > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir, ": GPT-2 trains as a causal LM only (no sequence classification)"));
  }
  Gpt2 model(config);
  ASSIGN_OR_RETURN(safetensors::ShardedFiles files, safetensors::ShardedFiles::OpenDir(model_dir));
  RETURN_IF_ERROR(Annotate(LoadGpt2Weights(*model, files), model_dir));
  model->to(options.device, options.dtype);
  return model;
}

}  // namespace peftd::model
