#include "adapters/inject.h"

#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace peftd::adapters {
namespace {

constexpr char kRegexPrefix[] = "re:";

absl::StatusOr<bool> MatchesAny(const std::string& name, const std::vector<std::string>& patterns) {
  if (patterns.size() == 1 && patterns[0].rfind(kRegexPrefix, 0) == 0) {
    try {
      return std::regex_match(name, std::regex(patterns[0].substr(3)));
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad module regex '", patterns[0], "': ", e.what()));
    }
  }
  for (const auto& p : patterns) {
    if (name == p) return true;
    if (name.size() > p.size() && name.compare(name.size() - p.size(), p.size(), p) == 0 &&
        name[name.size() - p.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

// The index after "layers." in a module name, or -1.
int LayerIndex(const std::string& name) {
  static const std::regex kLayer(R"((?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)(?:\.|$))");
  std::smatch m;
  if (std::regex_search(name, m, kLayer)) return std::stoi(m[1].str());
  return -1;
}

}  // namespace

absl::StatusOr<bool> MatchesTarget(const std::string& name, const TargetSpec& spec) {
  if (!spec.exclude_modules.empty()) {
    auto excluded = MatchesAny(name, spec.exclude_modules);
    if (!excluded.ok()) return excluded.status();
    if (*excluded) return false;
  }
  auto targeted = MatchesAny(name, spec.target_modules);
  if (!targeted.ok() || !*targeted) return targeted;
  if (!spec.layers_to_transform.empty()) {
    const int layer = LayerIndex(name);
    bool keep = false;
    for (int l : spec.layers_to_transform) keep = keep || l == layer;
    return keep;
  }
  return true;
}

absl::StatusOr<std::vector<std::string>> InjectAdapters(torch::nn::Module& model,
                                                        const TargetSpec& spec,
                                                        const AdapterFactory& factory) {
  if (spec.target_modules.empty()) return absl::InvalidArgumentError("target_modules: empty");
  std::vector<std::pair<std::string, LinearImpl*>> chosen;
  for (const auto& item : model.named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (!linear) continue;
    auto match = MatchesTarget(item.key(), spec);
    if (!match.ok()) return match.status();
    if (*match) chosen.emplace_back(item.key(), linear);
  }
  if (chosen.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_modules [", absl::StrJoin(spec.target_modules, ", "), "]",
        spec.exclude_modules.empty()
            ? ""
            : absl::StrCat(" minus [", absl::StrJoin(spec.exclude_modules, ", "), "]"),
        spec.layers_to_transform.empty()
            ? ""
            : absl::StrCat(" in layers [", absl::StrJoin(spec.layers_to_transform, ", "), "]"),
        " match no Linear module of the model"));
  }
  std::vector<std::string> names;
  for (auto& [name, linear] : chosen) {
    linear->Attach(factory(name, *linear), "adapter");
    names.push_back(name);
  }
  return names;
}

std::map<std::string, LinearImpl*> AdaptedLinears(torch::nn::Module& model) {
  std::map<std::string, LinearImpl*> out;
  for (const auto& item : model.named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear && linear->adapter()) out[item.key()] = linear;
  }
  return out;
}

ParameterCount CountParameters(torch::nn::Module& model) {
  ParameterCount count;
  for (const auto& p : model.parameters()) {
    count.total += p.numel();
    if (p.requires_grad()) count.trainable += p.numel();
  }
  for (const auto& [name, linear] : AdaptedLinears(model)) {
    int64_t n = 0;
    for (const auto& p : linear->adapter()->parameters()) {
      if (p.requires_grad()) n += p.numel();
    }
    count.trainable_by_module[name] = n;
    int64_t all = 0;
    for (const auto& p : linear->parameters()) all += p.numel();
    count.total_by_module[name] = all;
  }
  return count;
}

double ParameterCount::module_percent(const std::string& name) const {
  auto t = trainable_by_module.find(name);
  auto a = total_by_module.find(name);
  if (t == trainable_by_module.end() || a == total_by_module.end() || a->second == 0) return 0.0;
  return 100.0 * t->second / a->second;
}

}  // namespace peftd::adapters
