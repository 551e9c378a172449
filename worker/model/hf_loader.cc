#include "worker/model/hf_loader.h"

#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"
#include "worker/model/checkpoint_copy.h"

namespace peftd::model {

torch::Device DefaultDevice() {
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

absl::Status LoadWeights(LlamaImpl& model, const safetensors::ShardedFiles& files, uint64_t seed) {
  CheckpointMapping mapping;
  mapping.init_missing = [&](const std::string& name, torch::Tensor& param) {
    if (name != "score.weight") return false;
    torch::manual_seed(seed);
    param.normal_(0.0, 0.02);
    return true;
  };
  mapping.ignored = [&](const std::string& key) {
    return key.find("rotary_emb.inv_freq") != std::string::npos ||
           (key == "lm_head.weight" &&
            (model.config().tie_word_embeddings || model.config().sequence_classification));
  };
  return CopyCheckpoint(model, files, mapping);
}

absl::StatusOr<Llama> LoadLlama(const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(model_dir));
  if (config.IsGpt2()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir,
        ": config.json: architectures: GPT2LMHeadModel is no LLaMA-family model (LoadGpt2 "
        "loads it)"));
  }
  if (options.num_labels > 0) {
    config.sequence_classification = true;
    config.num_labels = options.num_labels;
    if (config.id2label.size() != static_cast<size_t>(options.num_labels)) config.id2label.clear();
    const size_t pos = config.architecture.find("ForCausalLM");
    if (pos != std::string::npos) {
      config.architecture.replace(pos, 11, "ForSequenceClassification");
    }
  }
  Llama model(config);
  ASSIGN_OR_RETURN(safetensors::ShardedFiles files, safetensors::ShardedFiles::OpenDir(model_dir));
  RETURN_IF_ERROR(Annotate(LoadWeights(*model, files, options.seed), model_dir));
  model->to(options.device, options.dtype);
  return model;
}

}  // namespace peftd::model
