#include "common/module_pattern.h"

#include <re2/re2.h>

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace peftd {
namespace {

// The layer component of a module name; group 1 is the index.
const re2::RE2& LayerRegex() {
  static const re2::RE2* const kLayer =
      new re2::RE2(R"((?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)(?:\.|$))");
  return *kLayer;
}

// Where the layer index sits in `name` (offset, length), or {npos, 0}.
std::pair<size_t, size_t> LayerSpan(absl::string_view name) {
  re2::StringPiece digits;
  if (!re2::RE2::PartialMatch(re2::StringPiece(name.data(), name.size()), LayerRegex(), &digits)) {
    return {absl::string_view::npos, 0};
  }
  return {static_cast<size_t>(digits.data() - name.data()), digits.size()};
}

// A plain entry that reads like a regular expression without its prefix.
bool LooksLikeRegex(absl::string_view entry) {
  return entry.find_first_of("*+?[]()|\\^$") != absl::string_view::npos;
}

std::string Quoted(absl::string_view entry) { return absl::StrCat("'", entry, "'"); }

// "0 to 3", "0, 2, 5": the layer indices a model has.
std::string LayerList(const std::set<int64_t>& layers) {
  if (layers.empty()) return "none: its module names carry no layer index";
  if (*layers.rbegin() - *layers.begin() + 1 == static_cast<int64_t>(layers.size())) {
    return layers.size() == 1 ? absl::StrCat(*layers.begin())
                              : absl::StrCat(*layers.begin(), " to ", *layers.rbegin());
  }
  return absl::StrJoin(layers, ", ");
}

// "{0..3}", "{0,2,5}", "7".
std::string FoldedIndices(std::vector<int64_t> indices) {
  std::sort(indices.begin(), indices.end());
  indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
  if (indices.size() == 1) return absl::StrCat(indices[0]);
  if (indices.back() - indices.front() + 1 == static_cast<int64_t>(indices.size())) {
    return absl::StrCat("{", indices.front(), "..", indices.back(), "}");
  }
  constexpr size_t kShown = 8;
  if (indices.size() <= kShown) return absl::StrCat("{", absl::StrJoin(indices, ","), "}");
  indices.resize(kShown);
  return absl::StrCat("{", absl::StrJoin(indices, ","), ",...}");
}

}  // namespace

absl::StatusOr<ModulePattern> ModulePattern::Compile(absl::string_view entry) {
  if (entry.empty()) return absl::InvalidArgumentError("empty module name");
  if (entry.size() > kMaxModulePatternChars) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxModulePatternChars,
                                                   " characters per entry, got ", entry.size()));
  }
  ModulePattern p;
  p.entry_ = std::string(entry);
  if (!absl::StartsWith(entry, kModuleRegexPrefix)) return p;
  const absl::string_view regex = entry.substr(sizeof(kModuleRegexPrefix) - 1);
  if (regex.empty()) {
    return absl::InvalidArgumentError("empty regular expression after \"re:\"");
  }
  re2::RE2::Options options;
  options.set_max_mem(kModuleRegexMaxMemBytes);
  options.set_log_errors(false);
  options.set_never_capture(true);
  auto compiled =
      std::make_shared<const re2::RE2>(re2::StringPiece(regex.data(), regex.size()), options);
  if (!compiled->ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad regular expression (RE2 syntax): ", compiled->error()));
  }
  p.regex_ = std::move(compiled);
  return p;
}

bool ModulePattern::Matches(absl::string_view name) const {
  if (regex_ != nullptr) {
    return re2::RE2::FullMatch(re2::StringPiece(name.data(), name.size()), *regex_);
  }
  if (name == entry_) return true;
  return name.size() > entry_.size() && absl::EndsWith(name, entry_) &&
         name[name.size() - entry_.size() - 1] == '.';
}

absl::StatusOr<ModulePatternList> ModulePatternList::Compile(
    absl::string_view field, const std::vector<std::string>& entries) {
  if (entries.size() > static_cast<size_t>(kMaxModulePatterns)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most ", kMaxModulePatterns, " entries, got ", entries.size()));
  }
  ModulePatternList list;
  int regexes = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StatusOr<ModulePattern> p = ModulePattern::Compile(entries[i]);
    if (!p.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: ", p.status().message()));
    }
    if (p->is_regex() && ++regexes > kMaxModuleRegexes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "]: at most ", kMaxModuleRegexes, " \"re:\" entries per list"));
    }
    list.patterns_.push_back(*std::move(p));
  }
  return list;
}

int ModulePatternList::FirstMatch(absl::string_view name) const {
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (patterns_[i].Matches(name)) return static_cast<int>(i);
  }
  return -1;
}

int64_t LayerIndexOf(absl::string_view name) {
  const auto [pos, len] = LayerSpan(name);
  int64_t index = -1;
  if (pos == absl::string_view::npos || !absl::SimpleAtoi(name.substr(pos, len), &index)) {
    return -1;
  }
  return index;
}

std::string SummarizeModuleNames(const std::vector<std::string>& names, size_t max_items) {
  std::vector<std::string> order;                                    // templates, first seen first
  std::map<std::string, std::vector<int64_t>> seen;                  // template -> layer indices
  std::map<std::string, std::pair<std::string, std::string>> parts;  // template -> (head, tail)
  for (const std::string& name : names) {
    const auto [pos, len] = LayerSpan(name);
    std::string head = name, tail;
    int64_t index = -1;
    if (pos != absl::string_view::npos &&
        absl::SimpleAtoi(absl::string_view(name).substr(pos, len), &index)) {
      head = name.substr(0, pos);
      tail = name.substr(pos + len);
    }
    const std::string key = absl::StrCat(head, "\n", tail, index < 0 ? "\n-" : "");
    if (!seen.count(key)) {
      order.push_back(key);
      parts[key] = {head, tail};
    }
    std::vector<int64_t>& indices = seen[key];
    if (index >= 0) indices.push_back(index);
  }
  std::vector<std::string> items;
  for (const std::string& key : order) {
    if (items.size() == max_items) {
      items.push_back(absl::StrCat("and ", order.size() - max_items, " more"));
      break;
    }
    const auto& [head, tail] = parts[key];
    items.push_back(seen[key].empty() ? head : absl::StrCat(head, FoldedIndices(seen[key]), tail));
  }
  return items.empty() ? "none" : absl::StrJoin(items, ", ");
}

absl::StatusOr<ModuleSelector> ModuleSelector::Compile(
    const std::vector<std::string>& target_modules, const std::vector<std::string>& exclude_modules,
    const std::vector<int64_t>& layers_to_transform) {
  if (target_modules.empty()) return absl::InvalidArgumentError("target_modules: empty");
  ModuleSelector s;
  auto targets = ModulePatternList::Compile("target_modules", target_modules);
  if (!targets.ok()) return targets.status();
  auto excludes = ModulePatternList::Compile("exclude_modules", exclude_modules);
  if (!excludes.ok()) return excludes.status();
  if (layers_to_transform.size() > static_cast<size_t>(kMaxLayersToTransform)) {
    return absl::InvalidArgumentError(absl::StrCat("layers_to_transform: at most ",
                                                   kMaxLayersToTransform, " entries, got ",
                                                   layers_to_transform.size()));
  }
  for (size_t i = 0; i < layers_to_transform.size(); ++i) {
    if (layers_to_transform[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers_to_transform[", i, "]: must be >= 0, got ", layers_to_transform[i]));
    }
  }
  s.targets_ = *std::move(targets);
  s.excludes_ = *std::move(excludes);
  s.layers_ = layers_to_transform;
  return s;
}

bool ModuleSelector::InLayers(absl::string_view name) const {
  if (layers_.empty()) return true;
  const int64_t layer = LayerIndexOf(name);
  return layer >= 0 && std::find(layers_.begin(), layers_.end(), layer) != layers_.end();
}

bool ModuleSelector::Selects(absl::string_view name) const {
  return !excludes_.MatchesAny(name) && targets_.MatchesAny(name) && InLayers(name);
}

absl::StatusOr<std::vector<std::string>> ModuleSelector::Resolve(
    const std::vector<std::string>& names) const {
  const auto& targets = targets_.patterns();
  const auto& excludes = excludes_.patterns();
  // Per target entry: modules it matches, of those in the layers, of those not excluded.
  std::vector<int64_t> matched(targets.size()), in_layers(targets.size()), selected(targets.size());
  std::vector<int64_t> excluded(excludes.size());
  std::set<int64_t> model_layers;
  std::vector<std::string> out;
  for (const std::string& name : names) {
    if (const int64_t layer = LayerIndexOf(name); layer >= 0) model_layers.insert(layer);
    bool is_excluded = false;
    for (size_t j = 0; j < excludes.size(); ++j) {
      if (excludes[j].Matches(name)) {
        ++excluded[j];
        is_excluded = true;
      }
    }
    const bool layer_ok = InLayers(name);
    bool is_selected = false;
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!targets[i].Matches(name)) continue;
      ++matched[i];
      if (!layer_ok) continue;
      ++in_layers[i];
      if (is_excluded) continue;
      ++selected[i];
      is_selected = true;
    }
    if (is_selected) out.push_back(name);
  }
  const std::string existing =
      absl::StrCat("; the model's Linear modules are ", SummarizeModuleNames(names));
  auto hint = [](const ModulePattern& p) -> std::string {
    return !p.is_regex() && LooksLikeRegex(p.entry())
               ? " (a regular expression needs the prefix \"re:\")"
               : "";
  };
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string what = absl::StrCat("target_modules[", i, "]: ", Quoted(targets[i].entry()));
    if (matched[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " matches no Linear module of the model", hint(targets[i]), existing));
    }
    if (in_layers[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " matches only modules outside layers_to_transform [",
                       absl::StrJoin(layers_, ", "), "]", existing));
    }
    if (selected[i] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " matches only modules that exclude_modules removes", existing));
    }
  }
  for (size_t j = 0; j < excludes.size(); ++j) {
    if (excluded[j] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("exclude_modules[", j, "]: ", Quoted(excludes[j].entry()),
                       " matches no Linear module of the model", hint(excludes[j]), existing));
    }
  }
  for (size_t k = 0; k < layers_.size(); ++k) {
    if (!model_layers.count(layers_[k])) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers_to_transform[", k, "]: the model has no layer ", layers_[k],
                       " (its layers: ", LayerList(model_layers), ")"));
    }
  }
  return out;
}

}  // namespace peftd
