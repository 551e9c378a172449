#include "adapters/module_patterns.h"

#include "absl/strings/str_cat.h"

namespace peftd::adapters {

absl::StatusOr<PatternKeys> PatternKeys::Compile(const std::vector<std::string>& keys,
                                                 const std::string& field) {
  PatternKeys out;
  out.keys_ = keys;
  for (const auto& key : keys) {
    try {
      // PEFT: re.match(rf"(.*\.)?({key})$", name), i.e. the key matches a dot-separated tail.
      out.regexes_.emplace_back("(.*\\.)?(" + key + ")");
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": key '", key, "' is not a valid regex (", e.what(), ")"));
    }
  }
  return out;
}

std::optional<size_t> PatternKeys::Match(const std::string& module) const {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == module) return i;  // an exact name wins over an earlier regex
  }
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (std::regex_match(module, regexes_[i])) return i;
  }
  return std::nullopt;
}

}  // namespace peftd::adapters
