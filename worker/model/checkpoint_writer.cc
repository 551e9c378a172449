#include "worker/model/checkpoint_writer.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "adapters/safetensors_torch.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace peftd::model {

namespace fs = std::filesystem;
using nlohmann::json;

absl::Status WriteCheckpointTensors(const std::string& dir,
                                    const std::map<std::string, torch::Tensor>& tensors,
                                    int shards) {
  if (shards <= 1) {
    return adapters::SaveTensors((fs::path(dir) / "model.safetensors").string(), tensors,
                                 {{"format", "pt"}});
  }
  std::vector<std::map<std::string, torch::Tensor>> parts(shards);
  json weight_map = json::object();
  int i = 0;
  for (const auto& [name, t] : tensors) {
    const int k = i++ % shards;
    parts[k][name] = t;
    weight_map[name] = absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, shards);
  }
  int64_t total = 0;
  for (int k = 0; k < shards; ++k) {
    for (auto& [n, t] : parts[k]) total += t.nbytes();
    RETURN_IF_ERROR(adapters::SaveTensors(
        (fs::path(dir) / absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, shards)).string(),
        parts[k], {{"format", "pt"}}));
  }
  std::ofstream out(fs::path(dir) / "model.safetensors.index.json");
  out << json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) << "\n";
  return out ? absl::OkStatus() : absl::InternalError("writing model.safetensors.index.json");
}

}  // namespace peftd::model
