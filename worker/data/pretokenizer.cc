#include "worker/data/pretokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/data/pretokenizer_regex.h"
#include "worker/data/tokenizer_json_fields.h"
#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {

using nlohmann::json;

namespace {

// HF SplitDelimiterBehavior.
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class Prepend { kAlways, kFirst, kNever };

struct Piece {
  std::string text;
  bool first;
};

using Range = std::pair<size_t, size_t>;

// HF's NormalizedString::split: `matches` marks the delimiters of a text of length `size`;
// returns the [begin, end) ranges kept under `behavior`.
void ApplyBehavior(const std::vector<Range>& matches, size_t size, bool invert, Behavior behavior,
                   std::vector<Range>* out) {
  std::vector<std::pair<Range, bool>> parts;  // (range, is_match) covering [0, size)
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev < b) parts.push_back({{prev, b}, invert});
    parts.push_back({{b, e}, !invert});
    prev = e;
  }
  if (prev < size) parts.push_back({{prev, size}, invert});
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& [r, m] : parts) {
        if (!m) out->push_back(r);
      }
      return;
    case Behavior::kIsolated:
      for (const auto& [r, m] : parts) out->push_back(r);
      return;
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      const size_t base = out->size();
      for (const auto& [r, m] : parts) {
        if (m && !previous_match && out->size() > base) {
          out->back().second = r.second;
        } else {
          out->push_back(r);
        }
        previous_match = m;
      }
      return;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      std::vector<Range> rev;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->second && !previous_match && !rev.empty()) {
          rev.back().first = it->first.first;
        } else {
          rev.push_back(it->first);
        }
        previous_match = it->second;
      }
      out->insert(out->end(), rev.rbegin(), rev.rend());
      return;
    }
    case Behavior::kContiguous: {
      bool previous_match = false;
      const size_t base = out->size();
      for (const auto& [r, m] : parts) {
        if (m == previous_match && out->size() > base) {
          out->back().second = r.second;
        } else {
          out->push_back(r);
        }
        previous_match = m;
      }
      return;
    }
  }
}

void FindLiteral(std::string_view text, const std::string& literal, std::vector<Range>* out) {
  if (literal.empty()) return;
  size_t pos = 0;
  while ((pos = text.find(literal, pos)) != std::string_view::npos) {
    out->emplace_back(pos, pos + literal.size());
    pos += literal.size();
  }
}

}  // namespace

struct PreTokenizer::Step {
  enum class Kind { kSplit, kByteLevel, kMetaspace, kDigits };
  Kind kind;
  std::unique_ptr<SplitRegex> regex;  // Split (Regex) and ByteLevel(use_regex)
  std::string literal;                // Split (String); Metaspace: the replacement
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  Prepend prepend = Prepend::kAlways;
  bool split = true;               // Metaspace
  bool individual_digits = false;  // Digits

  void Apply(const Piece& in, std::vector<Piece>* out) const;
};

void PreTokenizer::Step::Apply(const Piece& in, std::vector<Piece>* out) const {
  std::string_view text = in.text;
  std::string rewritten;
  if (kind == Kind::kByteLevel && add_prefix_space && (text.empty() || text[0] != ' ')) {
    rewritten = " ";
    rewritten += text;
    text = rewritten;
  }
  if (kind == Kind::kMetaspace) {
    rewritten.reserve(text.size() + 8);
    for (char c : text) {
      if (c == ' ') {
        rewritten += literal;
      } else {
        rewritten += c;
      }
    }
    const bool starts = rewritten.compare(0, literal.size(), literal) == 0;
    if (!starts && (prepend == Prepend::kAlways || (prepend == Prepend::kFirst && in.first))) {
      rewritten.insert(0, literal);
    }
    text = rewritten;
    if (!split) {
      out->push_back({std::string(text), in.first});
      return;
    }
  }
  std::vector<Range> matches;
  Behavior b = behavior;
  bool inv = invert;
  switch (kind) {
    case Kind::kSplit:
      if (regex != nullptr) {
        regex->FindMatches(text, &matches);
      } else {
        FindLiteral(text, literal, &matches);
      }
      break;
    case Kind::kByteLevel:
      if (regex == nullptr) {
        out->push_back({std::string(text), in.first});
        return;
      }
      regex->FindMatches(text, &matches);
      b = Behavior::kIsolated, inv = false;
      break;
    case Kind::kMetaspace:
      FindLiteral(text, literal, &matches);
      b = Behavior::kMergedWithNext, inv = false;
      break;
    case Kind::kDigits: {
      for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] < '0' || text[i] > '9') continue;
        size_t j = i + 1;
        if (!individual_digits) {
          while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
        }
        matches.emplace_back(i, j);
        i = j - 1;
      }
      b = Behavior::kIsolated, inv = false;
      break;
    }
  }
  std::vector<Range> kept;
  ApplyBehavior(matches, text.size(), inv, b, &kept);
  for (const auto& [s, e] : kept) {
    if (e > s) out->push_back({std::string(text.substr(s, e - s)), in.first && s == 0});
  }
}

namespace {

absl::Status Parse(const json& config, const std::string& path,
                   std::vector<std::unique_ptr<PreTokenizer::Step>>* steps) {
  using Step = PreTokenizer::Step;
  ASSIGN_OR_RETURN(const std::string type, TypeField(config, path));
  if (type == "Sequence") {
    const json* list = FindField(config, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return FieldError(JoinPath(path, "pretokenizers"), "must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(
          Parse((*list)[i], absl::StrCat(JoinPath(path, "pretokenizers"), "[", i, "]"), steps));
    }
    return absl::OkStatus();
  }
  auto step = std::make_unique<Step>();
  if (type == "Split") {
    step->kind = Step::Kind::kSplit;
    bool is_regex = false;
    ASSIGN_OR_RETURN(const std::string pattern, PatternField(config, path, "pattern", &is_regex));
    if (is_regex) {
      ASSIGN_OR_RETURN(step->regex, SplitRegex::Compile(
                                        pattern, "tokenizer.json: " + JoinPath(path, "pattern")));
    } else {
      step->literal = pattern;
    }
    ASSIGN_OR_RETURN(const std::string behavior, StringField(config, path, "behavior", ""));
    if (behavior == "Removed") {
      step->behavior = Behavior::kRemoved;
    } else if (behavior == "Isolated") {
      step->behavior = Behavior::kIsolated;
    } else if (behavior == "MergedWithPrevious") {
      step->behavior = Behavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      step->behavior = Behavior::kMergedWithNext;
    } else if (behavior == "Contiguous") {
      step->behavior = Behavior::kContiguous;
    } else {
      return FieldError(JoinPath(path, "behavior"),
                        absl::StrCat("\"", behavior,
                                     "\" is not one of Removed, Isolated, MergedWithPrevious, "
                                     "MergedWithNext, Contiguous"));
    }
    ASSIGN_OR_RETURN(step->invert, BoolField(config, path, "invert", false));
  } else if (type == "ByteLevel") {
    step->kind = Step::Kind::kByteLevel;
    ASSIGN_OR_RETURN(step->add_prefix_space, BoolField(config, path, "add_prefix_space", true));
    ASSIGN_OR_RETURN(const bool use_regex, BoolField(config, path, "use_regex", true));
    if (use_regex) {
      ASSIGN_OR_RETURN(step->regex, SplitRegex::Compile(kGpt2SplitPattern, "ByteLevel"));
    }
  } else if (type == "Metaspace") {
    step->kind = Step::Kind::kMetaspace;
    ASSIGN_OR_RETURN(step->literal, StringField(config, path, "replacement", "\xE2\x96\x81"));
    size_t pos = 0;
    if (step->literal.empty() || CodePointLength(step->literal, 0) != step->literal.size() ||
        NextCodePoint(step->literal, &pos) == kInvalidCodePoint) {
      return FieldError(JoinPath(path, "replacement"), "must be one character");
    }
    ASSIGN_OR_RETURN(step->split, BoolField(config, path, "split", true));
    const json* scheme = FindField(config, "prepend_scheme");
    if (scheme != nullptr) {
      const std::string s = scheme->is_string() ? scheme->get<std::string>() : "";
      if (s == "always") {
        step->prepend = Prepend::kAlways;
      } else if (s == "first") {
        step->prepend = Prepend::kFirst;
      } else if (s == "never") {
        step->prepend = Prepend::kNever;
      } else {
        return FieldError(JoinPath(path, "prepend_scheme"),
                          "must be \"always\", \"first\" or \"never\"");
      }
    } else {
      // Files written before tokenizers 0.14 have add_prefix_space instead.
      ASSIGN_OR_RETURN(const bool add, BoolField(config, path, "add_prefix_space", true));
      step->prepend = add ? Prepend::kAlways : Prepend::kNever;
    }
  } else if (type == "Digits") {
    step->kind = Step::Kind::kDigits;
    ASSIGN_OR_RETURN(step->individual_digits, BoolField(config, path, "individual_digits", false));
  } else {
    return FieldError(JoinPath(path, "type"),
                      absl::StrCat("\"", type,
                                   "\" is not supported (supported: Sequence, Split, ByteLevel, "
                                   "Metaspace, Digits)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

}  // namespace

PreTokenizer::~PreTokenizer() = default;

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const json* config,
                                                                     const std::string& path) {
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  if (config == nullptr || config->is_null()) return p;
  RETURN_IF_ERROR(Parse(*config, path, &p->steps_));
  for (size_t i = 0; i < p->steps_.size(); ++i) {
    if (p->steps_[i]->kind == Step::Kind::kByteLevel && i + 1 != p->steps_.size()) {
      return FieldError(path,
                        "has a pre-tokenizer after ByteLevel; only a last ByteLevel is "
                        "supported");
    }
  }
  p->byte_level_ = !p->steps_.empty() && p->steps_.back()->kind == Step::Kind::kByteLevel;
  return p;
}

void PreTokenizer::Split(std::string_view text, bool first, std::vector<std::string>* out) const {
  if (steps_.empty()) {
    if (!text.empty()) out->emplace_back(text);
    return;
  }
  std::vector<Piece> pieces{{std::string(text), first}};
  std::vector<Piece> next;
  for (size_t i = 0; i < steps_.size(); ++i) {
    next.clear();
    for (const Piece& p : pieces) steps_[i]->Apply(p, &next);
    pieces.swap(next);
  }
  for (Piece& p : pieces) out->push_back(std::move(p.text));
}

}  // namespace peftd::data
