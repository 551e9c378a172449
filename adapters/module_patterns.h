// Per-module overrides in HF PEFT's adapter_config.json: LoRA's `rank_pattern` ({key: r}) and
// `alpha_pattern` ({key: lora_alpha}). A key applies to a module as PEFT's get_pattern_key
// decides: the key equal to the module's full name, else the first key, in the file's order,
// for which `(.*\.)?(key)` matches the whole name (a regex: "q_proj" matches every q_proj,
// "layers\.0\.self_attn\.q_proj" one of them). Modules no key matches keep the global r / alpha.
#ifndef PEFTD_ADAPTERS_MODULE_PATTERNS_H_
#define PEFTD_ADAPTERS_MODULE_PATTERNS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace peftd::adapters {

// Keys of one pattern object, compiled once.
class PatternKeys {
 public:
  // InvalidArgument naming `field` and the key when a key is not a valid regex (RE2 syntax,
  // matched in linear time: the keys come from adapter files of unknown origin).
  static absl::StatusOr<PatternKeys> Compile(const std::vector<std::string>& keys,
                                             const std::string& field);
  // Index of the key that applies to `module`, or nullopt.
  std::optional<size_t> Match(const std::string& module) const;

 private:
  std::vector<std::string> keys_;
  std::vector<std::shared_ptr<const re2::RE2>> regexes_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_MODULE_PATTERNS_H_
