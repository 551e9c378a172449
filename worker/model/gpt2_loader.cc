#include "worker/model/gpt2_loader.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"

namespace peftd::model {
namespace {

constexpr char kPrefix[] = "transformer.";

// The checkpoint key of parameter `name`: itself, or without "transformer." in a checkpoint saved
// from GPT2Model.
std::string KeyIn(const safetensors::ShardedFiles& files, const std::string& name) {
  if (files.contains(name) || !absl::StartsWith(name, kPrefix)) return name;
  const std::string bare = name.substr(sizeof(kPrefix) - 1);
  return files.contains(bare) ? bare : name;
}

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
    const bool conv1d = IsConv1DWeight(name);
    std::vector<int64_t> expected = param.sizes().vec();
    if (conv1d) std::swap(expected[0], expected[1]);
    if (view.shape != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", key, "' has shape [", absl::StrJoin(view.shape, ", "),
                       "] in the checkpoint, the model (from config.json) needs [",
                       absl::StrJoin(expected, ", "), "]",
                       conv1d ? " (a Conv1D weight, stored (in, out))" : ""));
    }
    ASSIGN_OR_RETURN(torch::ScalarType type, adapters::ToScalarType(view.dtype));
    torch::Tensor src = torch::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                                         torch::TensorOptions().dtype(type));
    param.copy_(conv1d ? src.t() : src);
    used.insert(key);
  }
  std::vector<std::string> unexpected;
  for (const auto& key : files.names()) {
    if (used.count(key) || IsMaskBuffer(key)) continue;
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
