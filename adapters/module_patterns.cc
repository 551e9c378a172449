#include "adapters/module_patterns.h"

#include "absl/strings/str_cat.h"
#include "re2/re2.h"

namespace peftd::adapters {

absl::StatusOr<PatternKeys> PatternKeys::Compile(const std::vector<std::string>& keys,
                                                 const std::string& field) {
  PatternKeys out;
  out.keys_ = keys;
  RE2::Options options;
  options.set_log_errors(false);
  for (const auto& key : keys) {
    // PEFT: re.match(rf"(.*\.)?({key})$", name), i.e. the key matches a dot-separated tail.
    auto re = std::make_shared<const RE2>("(.*\\.)?(" + key + ")", options);
    if (!re->ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": key '", key.substr(0, 200),
                                                     "' is not a valid regex (", re->error(), ")"));
    }
    out.regexes_.push_back(std::move(re));
  }
  return out;
}

std::optional<size_t> PatternKeys::Match(const std::string& module) const {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == module) return i;  // an exact name wins over an earlier regex
  }
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (RE2::FullMatch(module, *regexes_[i])) return i;
  }
  return std::nullopt;
}

}  // namespace peftd::adapters
