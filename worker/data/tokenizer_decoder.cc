#include "worker/data/tokenizer_decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/data/bpe_byte_level.h"
#include "worker/data/tokenizer_json_fields.h"
#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {

using nlohmann::json;

struct Decoder::Step {
  enum class Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip };
  Kind kind;
  std::string a;                // Replace: pattern; Metaspace: replacement; Strip: content
  std::string b;                // Replace: content
  bool prepend = true;          // Metaspace: strip the first token's replacement
  int64_t start = 0, stop = 0;  // Strip

  void Apply(std::vector<std::string>* tokens) const;
};

namespace {

void ReplaceAll(std::string* text, const std::string& from, const std::string& to) {
  if (from.empty() || text->find(from) == std::string::npos) return;
  std::string out;
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

// "<0xNN>" -> NN, else -1.
int ByteToken(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

void Decoder::Step::Apply(std::vector<std::string>* tokens) const {
  switch (kind) {
    case Kind::kByteLevel: {
      // All tokens become one byte string; a token with a character outside the byte table
      // contributes its own UTF-8 bytes.
      std::string bytes;
      for (const std::string& t : *tokens) {
        std::string mapped;
        bool ok = true;
        size_t pos = 0;
        while (pos < t.size()) {
          const int b = ByteLevelByte(NextCodePoint(t, &pos));
          if (b < 0) {
            ok = false;
            break;
          }
          mapped.push_back(static_cast<char>(b));
        }
        bytes += ok ? mapped : t;
      }
      tokens->assign(1, Utf8Lossy(bytes));
      return;
    }
    case Kind::kMetaspace:
      for (size_t i = 0; i < tokens->size(); ++i) {
        ReplaceAll(&(*tokens)[i], a, (i == 0 && prepend) ? "" : " ");
      }
      return;
    case Kind::kReplace:
      for (std::string& t : *tokens) ReplaceAll(&t, a, b);
      return;
    case Kind::kByteFallback: {
      std::vector<std::string> out;
      out.reserve(tokens->size());
      std::string pending;
      size_t pending_count = 0;
      auto flush = [&]() {
        if (pending_count == 0) return;
        if (IsValidUtf8(pending)) {
          out.push_back(pending);
        } else {
          for (size_t i = 0; i < pending_count; ++i) out.push_back("\xEF\xBF\xBD");
        }
        pending.clear();
        pending_count = 0;
      };
      for (std::string& t : *tokens) {
        const int byte = ByteToken(t);
        if (byte >= 0) {
          pending.push_back(static_cast<char>(byte));
          ++pending_count;
        } else {
          flush();
          out.push_back(std::move(t));
        }
      }
      flush();
      *tokens = std::move(out);
      return;
    }
    case Kind::kFuse: {
      std::string all;
      for (const std::string& t : *tokens) all += t;
      tokens->assign(1, std::move(all));
      return;
    }
    case Kind::kStrip:
      for (std::string& t : *tokens) {
        // Up to `start` leading and `stop` trailing copies of the content character.
        size_t begin = 0;
        for (int64_t i = 0; i < start && t.compare(begin, a.size(), a) == 0 && !a.empty(); ++i) {
          begin += a.size();
        }
        size_t end = t.size();
        for (int64_t i = 0; i < stop && end >= begin + a.size() && !a.empty() &&
                            t.compare(end - a.size(), a.size(), a) == 0;
             ++i) {
          end -= a.size();
        }
        t = t.substr(begin, end - begin);
      }
      return;
  }
}

namespace {

absl::Status Parse(const json& config, const std::string& path,
                   std::vector<std::unique_ptr<Decoder::Step>>* steps) {
  using Step = Decoder::Step;
  ASSIGN_OR_RETURN(const std::string type, TypeField(config, path));
  if (type == "Sequence") {
    const json* list = FindField(config, "decoders");
    if (list == nullptr || !list->is_array()) {
      return FieldError(JoinPath(path, "decoders"), "must be a list");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(
          Parse((*list)[i], absl::StrCat(JoinPath(path, "decoders"), "[", i, "]"), steps));
    }
    return absl::OkStatus();
  }
  auto step = std::make_unique<Step>();
  if (type == "ByteLevel") {
    step->kind = Step::Kind::kByteLevel;
  } else if (type == "Metaspace") {
    step->kind = Step::Kind::kMetaspace;
    ASSIGN_OR_RETURN(step->a, StringField(config, path, "replacement", "\xE2\x96\x81"));
    const json* scheme = FindField(config, "prepend_scheme");
    if (scheme != nullptr) {
      step->prepend = !(scheme->is_string() && scheme->get<std::string>() == "never");
    } else {
      ASSIGN_OR_RETURN(step->prepend, BoolField(config, path, "add_prefix_space", true));
    }
  } else if (type == "Replace") {
    step->kind = Step::Kind::kReplace;
    bool is_regex = false;
    ASSIGN_OR_RETURN(step->a, PatternField(config, path, "pattern", &is_regex));
    if (is_regex) {
      return FieldError(JoinPath(path, "pattern"), "must be a String pattern in a decoder");
    }
    ASSIGN_OR_RETURN(step->b, StringField(config, path, "content", ""));
  } else if (type == "ByteFallback") {
    step->kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step->kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step->kind = Step::Kind::kStrip;
    ASSIGN_OR_RETURN(step->a, StringField(config, path, "content", " "));
    ASSIGN_OR_RETURN(step->start, IntField(config, path, "start", 0));
    ASSIGN_OR_RETURN(step->stop, IntField(config, path, "stop", 0));
  } else {
    return FieldError(JoinPath(path, "type"),
                      absl::StrCat("\"", type,
                                   "\" is not supported (supported: Sequence, ByteLevel, "
                                   "Metaspace, Replace, ByteFallback, Fuse, Strip)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

}  // namespace

Decoder::~Decoder() = default;

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::FromJson(const json* config,
                                                           const std::string& path) {
  std::unique_ptr<Decoder> d(new Decoder());
  if (config == nullptr || config->is_null()) return d;
  d->none_ = false;
  RETURN_IF_ERROR(Parse(*config, path, &d->steps_));
  return d;
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  std::string out;
  if (none_) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return Utf8Lossy(out);
  }
  for (const auto& step : steps_) step->Apply(&tokens);
  for (const std::string& t : tokens) out += t;
  return Utf8Lossy(out);
}

}  // namespace peftd::data
