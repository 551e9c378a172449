// Attaching adapters to a model by module name, with HF PEFT's matching rules
// (common/module_pattern.h, shared with the server's check at submit):
//  - each entry of target_modules stands alone: a plain name matches a module whose full name
//    equals it or ends with "." + it ("q_proj" matches "model.layers.0.self_attn.q_proj"); an entry
//    "re:<regex>" (RE2) matches a module whose full name it matches entirely; a list may mix both;
//  - exclude_modules (same rules) are applied first;
//  - layers_to_transform keeps only modules whose name holds "layers.<i>." with i in the list.
#ifndef PEFTD_ADAPTERS_INJECT_H_
#define PEFTD_ADAPTERS_INJECT_H_

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/linear.h"

namespace peftd::adapters {

struct TargetSpec {
  std::vector<std::string> target_modules;
  std::vector<std::string> exclude_modules;
  std::vector<int> layers_to_transform;  // empty: all layers
};

// Whether the module called `name` is adapted under `spec` (InvalidArgument on a bad pattern).
absl::StatusOr<bool> MatchesTarget(const std::string& name, const TargetSpec& spec);

// Creates the adapter for one Linear.
using AdapterFactory =
    std::function<std::shared_ptr<Adapter>(const std::string& name, LinearImpl& linear)>;

// Attaches an adapter (child name "adapter") to every matching adapters::Linear of `model`.
// Returns the adapted module names in model order; InvalidArgument naming the entry and listing
// the model's Linear modules when an entry selects nothing (ModuleSelector::Resolve).
absl::StatusOr<std::vector<std::string>> InjectAdapters(torch::nn::Module& model,
                                                        const TargetSpec& spec,
                                                        const AdapterFactory& factory);

// The adapted Linears of `model` by name.
std::map<std::string, LinearImpl*> AdaptedLinears(torch::nn::Module& model);

struct ParameterCount {
  int64_t trainable = 0;  // elements with requires_grad
  int64_t total = 0;      // every parameter element, frozen base included
  std::map<std::string, int64_t> trainable_by_module;  // adapted module -> its adapter's count
  std::map<std::string, int64_t> total_by_module;      // adapted module -> W0, b0 and adapter
  double trainable_percent() const { return total ? 100.0 * trainable / total : 0.0; }
  // 100·trainable/total of one adapted module; 0 for a name that is not adapted.
  double module_percent(const std::string& name) const;
};
ParameterCount CountParameters(torch::nn::Module& model);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_INJECT_H_
