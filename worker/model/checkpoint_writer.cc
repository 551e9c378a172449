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

absl::StatusOr<torch::Dtype> StoredDtype(const std::string& dtype) {
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", dtype, "': use float32, bfloat16 or float16"));
}

absl::Status CreateModelFolder(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status WriteModelText(const std::string& dir, const std::string& name,
                            const std::string& text) {
  std::ofstream out(fs::path(dir) / name);
  out << text << "\n";
  return out ? absl::OkStatus() : absl::InternalError(absl::StrCat("writing ", name));
}

}  // namespace peftd::model
