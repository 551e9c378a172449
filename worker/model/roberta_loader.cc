#include "worker/model/roberta_loader.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/safetensors_torch.h"
#include "common/model_modules.h"
#include "common/status.h"

namespace peftd::model {
namespace {

constexpr char kPrefix[] = "roberta.";

// The checkpoint key of parameter `name`: itself, or without "roberta." in a checkpoint saved
// from RobertaModel.
std::string KeyIn(const safetensors::ShardedFiles& files, const std::string& name) {
  if (files.contains(name) || !absl::StartsWith(name, kPrefix)) return name;
  const std::string bare = name.substr(sizeof(kPrefix) - 1);
  return files.contains(bare) ? bare : name;
}

// Tensors of other heads and buffers that RobertaForSequenceClassification does not use.
bool Ignored(const std::string& key) {
  return absl::StartsWith(key, "lm_head.") || absl::StartsWith(key, "roberta.pooler.") ||
         absl::StartsWith(key, "pooler.") || absl::EndsWith(key, "embeddings.position_ids");
}

}  // namespace

absl::Status LoadRobertaWeights(RobertaImpl& model, const safetensors::ShardedFiles& files,
                                uint64_t seed) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  bool seeded = false;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".adapter.") != std::string::npos) continue;
    torch::Tensor& param = item.value();
    const std::string key = KeyIn(files, name);
    if (!files.contains(key)) {
      if (absl::StartsWith(name, "classifier.")) {
        // RobertaPreTrainedModel._init_weights: Linear weights N(0, initializer_range), biases 0.
        if (!seeded) torch::manual_seed(seed), seeded = true;
        if (absl::EndsWith(name, ".bias")) {
          param.zero_();
        } else {
          param.normal_(0.0, 0.02);
        }
        continue;
      }
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
    param.copy_(torch::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                                 torch::TensorOptions().dtype(type)));
    used.insert(key);
  }
  std::vector<std::string> unexpected;
  for (const auto& key : files.names()) {
    if (used.count(key) || Ignored(key)) continue;
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
