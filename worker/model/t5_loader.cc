#include "worker/model/t5_loader.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"

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
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".adapter.") != std::string::npos) continue;
    torch::Tensor& param = item.value();
    const std::string key = KeyIn(files, name);
    if (!files.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", name, "'"));
    }
    ASSIGN_OR_RETURN(safetensors::TensorView view, files.Get(key));
    if (view.shape != param.sizes().vec()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", key, "' has shape [", absl::StrJoin(view.shape, ", "),
                       "] in the checkpoint, the model (from config.json) needs [",
                       absl::StrJoin(param.sizes().vec(), ", "), "]"));
    }
    ASSIGN_OR_RETURN(torch::ScalarType type, adapters::ToScalarType(view.dtype));
    torch::Tensor src = torch::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                                         torch::TensorOptions().dtype(type));
    param.copy_(src);
    used.insert(key);
  }
  std::vector<std::string> unexpected;
  for (const auto& key : files.names()) {
    if (used.count(key)) continue;
    if (key == kTiedEmbeddings[0] || key == kTiedEmbeddings[1]) continue;
    if (key == "lm_head.weight" && model.config().tie_word_embeddings) continue;
    unexpected.push_back(key);
  }
  if (!unexpected.empty()) {
    if (unexpected.size() > 5) unexpected.resize(5);
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint has tensors the model (from config.json) does not: ",
                     absl::StrJoin(unexpected, ", ")));
  }
  return absl::OkStatus();
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
