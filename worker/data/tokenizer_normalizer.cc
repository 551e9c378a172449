#include "worker/data/tokenizer_normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/data/pretokenizer_regex.h"
#include "worker/data/tokenizer_json_fields.h"
#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {

using nlohmann::json;

struct Normalizer::Step {
  enum class Kind { kPrepend, kReplace, kUnicode, kLowercase, kStrip };
  Kind kind;
  std::string a;                      // Prepend: the prefix; Replace: the literal pattern
  std::string b;                      // Replace: the content
  std::unique_ptr<SplitRegex> regex;  // Replace with a Regex pattern
  const icu::Normalizer2* unicode = nullptr;
  bool left = false, right = false;  // Strip
};

namespace {

void ReplaceAll(std::string* text, const std::string& from, const std::string& to) {
  if (from.empty() || text->find(from) == std::string::npos) return;
  std::string out;
  out.reserve(text->size() + text->size() / 4);
  size_t pos = 0;
  while (true) {
    const size_t hit = text->find(from, pos);
    if (hit == std::string::npos) break;
    out.append(*text, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(*text, pos, std::string::npos);
  *text = std::move(out);
}

void ApplyUnicode(const icu::Normalizer2* n, std::string* text) {
  UErrorCode status = U_ZERO_ERROR;
  // Invalid UTF-8 is left alone: ICU would turn it into U+FFFD and lose the bytes.
  if (!IsValidUtf8(*text)) return;
  if (n->isNormalizedUTF8(icu::StringPiece(text->data(), static_cast<int32_t>(text->size())),
                          status) &&
      U_SUCCESS(status)) {
    return;
  }
  status = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  n->normalizeUTF8(0, icu::StringPiece(text->data(), static_cast<int32_t>(text->size())), sink,
                   nullptr, status);
  if (U_SUCCESS(status)) *text = std::move(out);
}

absl::Status Parse(const json& config, const std::string& path,
                   std::vector<std::unique_ptr<Normalizer::Step>>* steps) {
  using Step = Normalizer::Step;
  ASSIGN_OR_RETURN(const std::string type, TypeField(config, path));
  if (type == "Sequence") {
    const json* list = FindField(config, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return FieldError(JoinPath(path, "normalizers"), "must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(
          Parse((*list)[i], absl::StrCat(JoinPath(path, "normalizers"), "[", i, "]"), steps));
    }
    return absl::OkStatus();
  }
  auto step = std::make_unique<Step>();
  if (type == "Prepend") {
    step->kind = Step::Kind::kPrepend;
    ASSIGN_OR_RETURN(step->a, StringField(config, path, "prepend", ""));
  } else if (type == "Replace") {
    step->kind = Step::Kind::kReplace;
    bool is_regex = false;
    ASSIGN_OR_RETURN(step->a, PatternField(config, path, "pattern", &is_regex));
    ASSIGN_OR_RETURN(step->b, StringField(config, path, "content", ""));
    if (is_regex) {
      ASSIGN_OR_RETURN(step->regex, SplitRegex::Compile(
                                        step->a, "tokenizer.json: " + JoinPath(path, "pattern")));
    }
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    step->kind = Step::Kind::kUnicode;
    UErrorCode status = U_ZERO_ERROR;
    if (type == "NFC") step->unicode = icu::Normalizer2::getNFCInstance(status);
    if (type == "NFD") step->unicode = icu::Normalizer2::getNFDInstance(status);
    if (type == "NFKC") step->unicode = icu::Normalizer2::getNFKCInstance(status);
    if (type == "NFKD") step->unicode = icu::Normalizer2::getNFKDInstance(status);
    if (U_FAILURE(status) || step->unicode == nullptr) {
      return absl::InternalError(absl::StrCat("ICU has no ", type, " normalizer"));
    }
  } else if (type == "Lowercase") {
    step->kind = Step::Kind::kLowercase;
  } else if (type == "Strip") {
    step->kind = Step::Kind::kStrip;
    ASSIGN_OR_RETURN(step->left, BoolField(config, path, "strip_left", true));
    ASSIGN_OR_RETURN(step->right, BoolField(config, path, "strip_right", true));
  } else {
    return FieldError(JoinPath(path, "type"),
                      absl::StrCat("\"", type,
                                   "\" is not supported (supported: Sequence, Prepend, Replace, "
                                   "NFC, NFD, NFKC, NFKD, Lowercase, Strip)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

}  // namespace

Normalizer::~Normalizer() = default;

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const json* config,
                                                                 const std::string& path) {
  std::unique_ptr<Normalizer> n(new Normalizer());
  if (config != nullptr && !config->is_null()) RETURN_IF_ERROR(Parse(*config, path, &n->steps_));
  return n;
}

void Normalizer::Normalize(std::string* text) const {
  for (const auto& step : steps_) {
    switch (step->kind) {
      case Step::Kind::kPrepend:
        if (!text->empty()) text->insert(0, step->a);
        break;
      case Step::Kind::kReplace:
        if (step->regex == nullptr) {
          ReplaceAll(text, step->a, step->b);
        } else {
          std::vector<std::pair<size_t, size_t>> matches;
          step->regex->FindMatches(*text, &matches);
          if (matches.empty()) break;
          std::string out;
          size_t pos = 0;
          for (const auto& [b, e] : matches) {
            out.append(*text, pos, b - pos);
            out += step->b;
            pos = e;
          }
          out.append(*text, pos, std::string::npos);
          *text = std::move(out);
        }
        break;
      case Step::Kind::kUnicode:
        ApplyUnicode(step->unicode, text);
        break;
      case Step::Kind::kLowercase:
        if (IsValidUtf8(*text)) {
          std::string out;
          icu::UnicodeString::fromUTF8(*text).toLower().toUTF8String(out);
          *text = std::move(out);
        }
        break;
      case Step::Kind::kStrip: {
        size_t begin = 0;
        size_t end = text->size();
        if (step->left) {
          while (begin < end) {
            size_t next = begin;
            if (!IsUnicodeWhitespace(NextCodePoint(*text, &next))) break;
            begin = next;
          }
        }
        if (step->right) {
          // Walk forward to find where the trailing whitespace starts.
          size_t pos = begin;
          size_t last_non_space_end = begin;
          while (pos < end) {
            if (!IsUnicodeWhitespace(NextCodePoint(*text, &pos))) last_non_space_end = pos;
          }
          end = last_non_space_end;
        }
        *text = text->substr(begin, end - begin);
        break;
      }
    }
  }
}

}  // namespace peftd::data
