// STUB until branch `svc` lands.
#include "server/model_root.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace peftd::server {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ResolveModelPath(const std::string& root, const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("base_model: required");
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(root, ec);
  const fs::path p = fs::weakly_canonical(base / name, ec);
  const std::string rel = p.lexically_relative(base).string();
  if (ec || rel.empty() || rel.rfind("..", 0) == 0 || fs::path(name).is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("base_model: '", name, "' is outside the model root"));
  }
  if (!fs::exists(p / "config.json", ec)) {
    return absl::NotFoundError(absl::StrCat("base_model: no model '", name,
                                            "' under the model root; see peftctl models list"));
  }
  return p.string();
}

absl::StatusOr<std::vector<v1::Model>> ListModels(const std::string& root) {
  std::vector<v1::Model> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (fs::exists(e.path() / "config.json", ec)) {
      v1::Model m;
      m.set_name(e.path().filename().string());
      out.push_back(m);
    }
  }
  return out;
}

absl::Status EnsureBuiltinModel(const std::string& root, const std::string& worker_binary) {
  return absl::OkStatus();
}

}  // namespace peftd::server
