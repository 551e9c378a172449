// Which Linear modules of a model get an adapter: JobSpec.target_modules, exclude_modules and
// layers_to_transform, with HF PEFT's rules. One place for the server (at submit, against the
// module names of the model's config.json) and the worker (when it injects adapters), so both
// read a pattern the same way.
//
// Every entry of a list stands on its own, and a list may mix both kinds:
//  - a plain name matches a module whose full name equals it or ends with "." + it
//    ("q_proj" matches "model.layers.0.self_attn.q_proj", "mlp.down_proj" matches
//    "model.layers.3.mlp.down_proj");
//  - "re:<regex>" matches a module whose full name the regex matches entirely.
// Regular expressions are RE2 (linear-time matching, no recursion, compiled within a memory
// budget), never std::regex, whose recursive matcher overflows the stack on a long pattern.
// Lists and entries are length-capped so that a request cannot make compiling them expensive.
#ifndef PEFTD_COMMON_MODULE_PATTERN_H_
#define PEFTD_COMMON_MODULE_PATTERN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace peftd {

inline constexpr char kModuleRegexPrefix[] = "re:";
// Entries per list: enough to list every projection of an 80-layer model by its full name.
inline constexpr int kMaxModulePatterns = 1024;
// Characters per entry ("re:" included).
inline constexpr size_t kMaxModulePatternChars = 512;
// "re:" entries per list; each compiles within kModuleRegexMaxMemBytes.
inline constexpr int kMaxModuleRegexes = 16;
// RE2's memory budget per regex (program and DFA cache); a larger pattern fails to compile.
inline constexpr int64_t kModuleRegexMaxMemBytes = int64_t{1} << 20;
// layers_to_transform entries (model configs have at most 4096 layers).
inline constexpr int kMaxLayersToTransform = 4096;

// One entry of target_modules or exclude_modules. Cheap to copy (the regex is shared).
class ModulePattern {
 public:
  // InvalidArgument, its message without a field prefix, for an empty entry, an entry over
  // kMaxModulePatternChars, or a "re:" entry whose regex is empty or does not compile.
  static absl::StatusOr<ModulePattern> Compile(absl::string_view entry);

  bool Matches(absl::string_view module_name) const;
  const std::string& entry() const { return entry_; }
  bool is_regex() const { return regex_ != nullptr; }

 private:
  std::string entry_;
  std::shared_ptr<const re2::RE2> regex_;  // null for a plain name
};

// A compiled list of entries; a module matches the list when it matches any entry.
class ModulePatternList {
 public:
  ModulePatternList() = default;
  // `field` names the list in errors: "target_modules[2]: bad regex ...", "exclude_modules: at
  // most 1024 entries, got 5000".
  static absl::StatusOr<ModulePatternList> Compile(absl::string_view field,
                                                   const std::vector<std::string>& entries);

  // Index of the first entry that matches `module_name`, or -1.
  int FirstMatch(absl::string_view module_name) const;
  bool MatchesAny(absl::string_view module_name) const { return FirstMatch(module_name) >= 0; }
  const std::vector<ModulePattern>& patterns() const { return patterns_; }
  bool empty() const { return patterns_.empty(); }

 private:
  std::vector<ModulePattern> patterns_;
};

// The layer index of a module name: the number after "layers." (or "h.", "blocks.", "block.",
// "layer.") between dots, e.g. 3 for "model.layers.3.mlp.up_proj"; -1 when there is none.
int64_t LayerIndexOf(absl::string_view module_name);

// "model.layers.{0..3}.self_attn.q_proj, ..., lm_head": the names with their layer indices
// folded, in first-seen order, at most `max_items` of them ("and N more" after that). For error
// messages that list what a model has.
std::string SummarizeModuleNames(const std::vector<std::string>& names, size_t max_items = 16);

// target_modules, exclude_modules and layers_to_transform together.
class ModuleSelector {
 public:
  ModuleSelector() = default;
  // InvalidArgument naming the list and entry for a bad pattern, an empty target list, a layer
  // < 0 or a list over its cap.
  static absl::StatusOr<ModuleSelector> Compile(const std::vector<std::string>& target_modules,
                                                const std::vector<std::string>& exclude_modules,
                                                const std::vector<int64_t>& layers_to_transform);

  // Whether the module gets an adapter: not excluded, targeted, and (with layers_to_transform)
  // in one of the layers.
  bool Selects(absl::string_view module_name) const;

  // The selected names of `module_names` (the model's Linear modules, in model order). Refused
  // with InvalidArgument, listing the module names that exist, when a target_modules entry
  // selects nothing (no module matches it, or only modules outside layers_to_transform or
  // excluded ones), an exclude_modules entry matches no module, or a layers_to_transform index
  // is a layer the model does not have.
  absl::StatusOr<std::vector<std::string>> Resolve(
      const std::vector<std::string>& module_names) const;

  const ModulePatternList& targets() const { return targets_; }
  const ModulePatternList& excludes() const { return excludes_; }
  const std::vector<int64_t>& layers() const { return layers_; }

 private:
  bool InLayers(absl::string_view module_name) const;

  ModulePatternList targets_;
  ModulePatternList excludes_;
  std::vector<int64_t> layers_;  // empty: every layer
};

}  // namespace peftd

#endif  // PEFTD_COMMON_MODULE_PATTERN_H_
