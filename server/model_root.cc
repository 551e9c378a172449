#include "server/model_root.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "server/process_launcher.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

constexpr char kConfigFile[] = "config.json";
constexpr char kListHint[] = "`peftctl models list` shows the models the server has";

// Whether `path` is `root` or below it, both canonical.
bool IsInside(const fs::path& root, const fs::path& path) {
  auto r = root.begin(), p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (p == path.end() || *r != *p) return false;
  }
  return true;
}

bool HasConfig(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kConfigFile, ec);
}

bool Skipped(const std::string& name) {
  return name.empty() || name[0] == '.' || absl::StrContains(name, ".tmp");
}

int64_t SizeOnDisk(const fs::path& dir) {
  int64_t total = 0;
  std::error_code ec;
  // Sizes of what the files point to: the HF cache layout is symlinks into a blob folder.
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      const auto size = it->file_size(fec);
      if (!fec) total += static_cast<int64_t>(size);
    }
  }
  return total;
}

// Architecture from the raw JSON, for configs ParseModelConfig refuses.
std::string RawArchitecture(const fs::path& config_path) {
  std::ifstream in(config_path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("architectures") && j["architectures"].is_array() &&
      !j["architectures"].empty() && j["architectures"][0].is_string()) {
    return j["architectures"][0].get<std::string>();
  }
  return "";
}

v1::Model DescribeModel(const fs::path& dir, const std::string& name) {
  v1::Model m;
  m.set_name(name);
  auto config = model::ReadModelConfig(dir.string());
  if (config.ok()) {
    m.set_architecture(config->architecture);
    m.set_parameters(config->NumParameters());
  } else {
    m.set_architecture(RawArchitecture(dir / kConfigFile));
    spdlog::warn("model \"{}\": {} (listed, but jobs on it will be refused)", name,
                 std::string(config.status().message()));
  }
  m.set_size_bytes(SizeOnDisk(dir));
  return m;
}

void FindModels(const fs::path& root, const fs::path& dir, const std::string& prefix, int depth,
                std::vector<v1::Model>* out) {
  std::error_code ec;
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    entries.push_back(*it);
  }
  for (const auto& e : entries) {
    const std::string name = e.path().filename().string();
    std::error_code dec;
    if (Skipped(name) || !e.is_directory(dec)) continue;
    // A symlinked folder is listed only when it stays inside the root: ResolveModelPath would
    // refuse it otherwise.
    const fs::path canonical = fs::canonical(e.path(), dec);
    if (dec || !IsInside(root, canonical)) continue;
    const std::string rel = prefix.empty() ? name : prefix + "/" + name;
    if (HasConfig(e.path())) {
      out->push_back(DescribeModel(e.path(), rel));
    } else if (depth + 1 < kMaxModelDepth) {
      FindModels(root, e.path(), rel, depth + 1, out);
    }
  }
}

}  // namespace

absl::StatusOr<std::string> ResolveModelPath(const std::string& root, const std::string& name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("base_model: required; name a model under the model root (", kListHint, ")"));
  }
  if (name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("base_model: contains a NUL byte");
  }
  std::error_code ec;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) {
    return absl::NotFoundError(absl::StrCat("base_model \"", name, "\": the model root \"", root,
                                            "\" does not exist (", ec.message(),
                                            "); start peftd with --model-root pointing at it"));
  }
  const fs::path requested(name);
  for (const auto& part : requested) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "base_model \"", name, "\": \"..\" is not allowed; name a model inside the model root (",
          kListHint, ")"));
    }
  }
  const fs::path joined = requested.is_absolute() ? requested : canonical_root / requested;
  if (requested.is_absolute()) {
    // Lexical check first so that the error says "outside" even when the path does not exist.
    const fs::path lexical = joined.lexically_normal();
    const fs::path lexical_root = fs::absolute(root).lexically_normal();
    if (!IsInside(canonical_root, lexical) && !IsInside(lexical_root, lexical)) {
      return absl::InvalidArgumentError(
          absl::StrCat("base_model \"", name, "\": absolute paths must be inside the model root \"",
                       canonical_root.string(), "\"; give the model's name relative to it"));
    }
  }
  if (!fs::exists(joined, ec)) {
    return absl::NotFoundError(absl::StrCat("base_model \"", name, "\": no model folder \"",
                                            joined.string(), "\" under the model root; ",
                                            kListHint));
  }
  const fs::path target = fs::canonical(joined, ec);
  if (ec) {
    return absl::NotFoundError(absl::StrCat("base_model \"", name, "\": cannot resolve \"",
                                            joined.string(), "\": ", ec.message()));
  }
  if (!IsInside(canonical_root, target)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "base_model \"", name, "\": resolves (through a symlink) to \"", target.string(),
        "\", outside the model root \"", canonical_root.string(), "\"; refused"));
  }
  if (!fs::is_directory(target, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("base_model \"", name, "\": \"", target.string(),
                     "\" is not a folder; a model is a "
                     "Hugging Face folder with config.json and safetensors weights"));
  }
  if (!HasConfig(target)) {
    return absl::FailedPreconditionError(
        absl::StrCat("base_model \"", name, "\": \"", target.string(),
                     "\" has no config.json; a model is a Hugging Face folder with config.json, "
                     "model.safetensors and tokenizer.json"));
  }
  return target.string();
}

absl::StatusOr<std::vector<v1::Model>> ListModels(const std::string& root) {
  std::vector<v1::Model> out;
  std::error_code ec;
  if (!fs::exists(root, ec)) return out;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("model root \"", root, "\": ", ec.message(), " (--model-root)"));
  }
  if (!fs::is_directory(canonical_root, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("model root \"", root, "\" is not a folder (--model-root)"));
  }
  FindModels(canonical_root, canonical_root, "", 0, &out);
  std::sort(out.begin(), out.end(),
            [](const v1::Model& a, const v1::Model& b) { return a.name() < b.name(); });
  return out;
}

absl::Status EnsureBuiltinModel(const std::string& root, const std::string& worker_binary) {
  const fs::path target = fs::path(root) / kBuiltinModelName;
  if (HasConfig(target)) return absl::OkStatus();
  std::error_code ec;
  const bool created = fs::create_directories(root, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--model-root: cannot create \"", root, "\": ", ec.message()));
  }
  // Owner-only like the data dir, but only for a folder we made: never chmod a user's folder.
  if (created) fs::permissions(root, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (fs::exists(target, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model root: \"", target.string(),
        "\" exists but has no config.json; remove it and peftd regenerates the built-in model"));
  }
  // The pid keeps two servers sharing a root from writing into the same temp folder.
  const fs::path tmp = fs::path(root) / absl::StrCat(kBuiltinModelName, ".tmp.", ::getpid());
  fs::remove_all(tmp, ec);
  spdlog::info("generating the built-in model {} with {}", target.string(), worker_binary);
  LaunchSpec make;
  make.argv = {worker_binary, "make-tiny-model", tmp.string()};
  make.stdout_to_stderr = true;
  auto exit = RunAndWait(make);
  if (!exit.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--worker-binary: ", exit.status().message(),
                     "; the built-in model is generated by `peftd-worker make-tiny-model`"));
  }
  if (!exit->ok() || !HasConfig(tmp)) {
    fs::remove_all(tmp, ec);
    return absl::FailedPreconditionError(
        absl::StrCat("--worker-binary: `", worker_binary, " make-tiny-model ", tmp.string(),
                     "` failed (", exit->ToString(), "); see its output above"));
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove_all(tmp, ec);
    // Another server sharing the root won the race: its model is the same deterministic one.
    if (HasConfig(target)) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("cannot move the built-in model into \"", target.string(), "\": ", why));
  }
  return absl::OkStatus();
}

}  // namespace peftd::server
