#include "adapters/inject.h"

#include "common/module_pattern.h"
#include "common/status.h"

namespace peftd::adapters {
namespace {

absl::StatusOr<ModuleSelector> CompileSelector(const TargetSpec& spec) {
  return ModuleSelector::Compile(
      spec.target_modules, spec.exclude_modules,
      std::vector<int64_t>(spec.layers_to_transform.begin(), spec.layers_to_transform.end()));
}

}  // namespace

absl::StatusOr<bool> MatchesTarget(const std::string& name, const TargetSpec& spec) {
  ASSIGN_OR_RETURN(ModuleSelector selector, CompileSelector(spec));
  return selector.Selects(name);
}

absl::StatusOr<std::vector<std::string>> InjectAdapters(torch::nn::Module& model,
                                                        const TargetSpec& spec,
                                                        const AdapterFactory& factory) {
  ASSIGN_OR_RETURN(ModuleSelector selector, CompileSelector(spec));
  std::vector<std::string> linear_names;
  std::map<std::string, LinearImpl*> linears;
  for (const auto& item : model.named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (!linear) continue;
    linear_names.push_back(item.key());
    linears[item.key()] = linear;
  }
  ASSIGN_OR_RETURN(std::vector<std::string> names, selector.Resolve(linear_names));
  for (const std::string& name : names) {
    LinearImpl* linear = linears.at(name);
    linear->Attach(factory(name, *linear), "adapter");
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
