#include "worker/model/checkpoint_copy.h"

#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"

namespace peftd::model {

absl::Status CopyCheckpoint(torch::nn::Module& model, const safetensors::ShardedFiles& files,
                            const CheckpointMapping& mapping) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".adapter.") != std::string::npos) continue;
    torch::Tensor& param = item.value();
    const std::string key = mapping.key ? mapping.key(name) : name;
    if (!files.contains(key)) {
      if (mapping.init_missing && mapping.init_missing(name, param)) continue;
      return absl::InvalidArgumentError(absl::StrCat("the checkpoint has no tensor '", name, "'"));
    }
    ASSIGN_OR_RETURN(safetensors::TensorView view, files.Get(key));
    const bool transposed = mapping.transposed && mapping.transposed(name);
    std::vector<int64_t> expected = param.sizes().vec();
    if (transposed) std::swap(expected[0], expected[1]);
    if (view.shape != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", key, "' has shape [", absl::StrJoin(view.shape, ", "),
                       "] in the checkpoint, the model (from config.json) needs [",
                       absl::StrJoin(expected, ", "), "]",
                       transposed ? " (a Conv1D weight, stored (in, out))" : ""));
    }
    ASSIGN_OR_RETURN(torch::ScalarType type, adapters::ToScalarType(view.dtype));
    // A view of the mapped bytes: copy_ converts dtype and device without an intermediate copy.
    torch::Tensor src = torch::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                                         torch::TensorOptions().dtype(type));
    param.copy_(transposed ? src.t() : src);
    used.insert(key);
  }
  std::vector<std::string> unexpected;
  for (const auto& key : files.names()) {
    if (used.count(key) || (mapping.ignored && mapping.ignored(key))) continue;
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

std::string KeyWithOrWithoutPrefix(const safetensors::ShardedFiles& files, const std::string& name,
                                   const std::string& prefix) {
  if (files.contains(name) || !absl::StartsWith(name, prefix)) return name;
  const std::string bare = name.substr(prefix.size());
  return files.contains(bare) ? bare : name;
}

}  // namespace peftd::model
