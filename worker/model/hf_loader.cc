#include "worker/model/hf_loader.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"

namespace peftd::model {

torch::Device DefaultDevice() {
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

absl::Status LoadWeights(LlamaImpl& model, const safetensors::ShardedFiles& files, uint64_t seed) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".adapter.") != std::string::npos) continue;
    torch::Tensor& param = item.value();
    if (!files.contains(name)) {
      if (name == "score.weight") {
        torch::manual_seed(seed);
        param.normal_(0.0, 0.02);
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", name, "'"));
    }
    ASSIGN_OR_RETURN(safetensors::TensorView view, files.Get(name));
    if (view.shape != param.sizes().vec()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has shape [", absl::StrJoin(view.shape, ", "),
                       "] in the checkpoint, the model (from ", "config.json) needs [",
                       absl::StrJoin(param.sizes().vec(), ", "), "]"));
    }
    ASSIGN_OR_RETURN(torch::ScalarType type, adapters::ToScalarType(view.dtype));
    // A view of the mapped bytes: copy_ converts dtype and device without an intermediate copy.
    torch::Tensor src = torch::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                                         torch::TensorOptions().dtype(type));
    param.copy_(src);
    used.insert(name);
  }
  std::vector<std::string> unexpected;
  for (const auto& name : files.names()) {
    if (used.count(name)) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    if (name == "lm_head.weight" &&
        (model.config().tie_word_embeddings || model.config().sequence_classification)) {
      continue;
    }
    unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    if (unexpected.size() > 5) unexpected.resize(5);
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint has tensors the model (from config.json) does not: ",
                     absl::StrJoin(unexpected, ", ")));
  }
  return absl::OkStatus();
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
