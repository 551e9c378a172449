// LoadTokenizer: which file of a model folder is the tokenizer, and how tokenizer_config.json
// overrides the special tokens the tokenizer file declares.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/data/sentencepiece_tokenizer.h"
#include "worker/data/tokenizer.h"
#include "worker/data/tokenizer_json.h"

namespace peftd::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot be read"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return ss.str();
}

absl::Status ConfigError(const std::string& field, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", field, " ", message));
}

// A special-token field of tokenizer_config.json: "<s>", {"content": "<s>", ...}, or null.
// Sets *id (-1 for null) when the field is present.
absl::Status SpecialField(const json& config, const char* key, const Tokenizer& tokenizer,
                          int64_t* id) {
  auto it = config.find(key);
  if (it == config.end()) return absl::OkStatus();
  const json& v = *it;
  if (v.is_null()) {
    *id = -1;
    return absl::OkStatus();
  }
  std::string content;
  if (v.is_string()) {
    content = v.get<std::string>();
  } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    content = v["content"].get<std::string>();
  } else {
    return ConfigError(key, "must be a token string or {\"content\": \"...\"}");
  }
  const std::optional<int64_t> found = tokenizer.TokenToId(content);
  if (!found) {
    return ConfigError(key, absl::StrCat("\"", content,
                                         "\" is not a token of the tokenizer; fix the name or "
                                         "use the tokenizer files of the same model"));
  }
  *id = *found;
  return absl::OkStatus();
}

absl::Status BoolConfig(const json& config, const char* key, bool* value) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return ConfigError(key, "must be true or false");
  *value = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ApplyConfig(const std::string& text, TokenizerBase* tokenizer) {
  json config;
  try {
    config = json::parse(text);
  } catch (const json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer_config.json: not valid JSON at byte ", e.byte));
  }
  if (!config.is_object()) return ConfigError("(top level)", "must be an object");
  SpecialTokens* s = tokenizer->mutable_special();
  RETURN_IF_ERROR(SpecialField(config, "bos_token", *tokenizer, &s->bos_id));
  RETURN_IF_ERROR(SpecialField(config, "eos_token", *tokenizer, &s->eos_id));
  RETURN_IF_ERROR(SpecialField(config, "pad_token", *tokenizer, &s->pad_id));
  RETURN_IF_ERROR(BoolConfig(config, "add_bos_token", &s->add_bos));
  RETURN_IF_ERROR(BoolConfig(config, "add_eos_token", &s->add_eos));
  return absl::OkStatus();
}

// A special-token field of tokenizer_config.json as its content string, `fallback` when absent.
std::string TokenName(const json& config, const char* key, const char* fallback) {
  auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return fallback;
}

// DeBERTa-v2/v3 (DebertaV2Tokenizer: spm.model, or tokenizer_class DebertaV2Tokenizer[Fast]):
// BERT's template, [CLS] A [SEP] and [CLS] A [SEP] B [SEP], with cls_token, sep_token and pad_token
// of tokenizer_config.json (DebertaV2Tokenizer's defaults [CLS], [SEP], [PAD] when absent), as
// build_inputs_with_special_tokens adds them.
absl::Status ApplyDebertaTemplate(const json& config, TokenizerBase* tokenizer) {
  const std::string cls = TokenName(config, "cls_token", "[CLS]");
  const std::string sep = TokenName(config, "sep_token", "[SEP]");
  const std::string pad = TokenName(config, "pad_token", "[PAD]");
  const std::optional<int64_t> cls_id = tokenizer->TokenToId(cls);
  const std::optional<int64_t> sep_id = tokenizer->TokenToId(sep);
  if (!cls_id) return ConfigError("cls_token", absl::StrCat("\"", cls, "\" is not a token"));
  if (!sep_id) return ConfigError("sep_token", absl::StrCat("\"", sep, "\" is not a token"));
  SpecialTokens* s = tokenizer->mutable_special();
  s->bos_id = *cls_id, s->add_bos = true;
  s->eos_id = *sep_id, s->add_eos = true;
  s->pair_middle = std::vector<int64_t>{*sep_id};
  if (const std::optional<int64_t> pad_id = tokenizer->TokenToId(pad)) s->pad_id = *pad_id;
  return absl::OkStatus();
}

absl::StatusOr<json> ParseConfig(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer_config.json: not valid JSON at byte ", e.byte));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  const fs::path dir(model_dir);
  std::unique_ptr<TokenizerBase> tokenizer;
  std::error_code ec;
  // The SentencePiece model, under its usual name, T5's (spiece.model) or DeBERTa-v3's
  // (spm.model).
  fs::path sentencepiece;
  for (const char* name : {"tokenizer.model", "spiece.model", "spm.model"}) {
    if (sentencepiece.empty() && fs::exists(dir / name, ec)) sentencepiece = dir / name;
  }
  if (fs::exists(dir / "tokenizer.json", ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(dir / "tokenizer.json"));
    auto parsed = TokenizerFromJson(text);
    if (parsed.ok()) {
      tokenizer = std::move(*parsed);
    } else if (!sentencepiece.empty()) {
      // A tokenizer.json of a model type not read here (T5's Unigram) beside the SentencePiece
      // model it was converted from: the latter gives the same ids.
      ASSIGN_OR_RETURN(tokenizer, LoadSentencePieceTokenizer(sentencepiece.string()));
    } else {
      return Annotate(parsed.status(), model_dir);
    }
  } else if (!sentencepiece.empty()) {
    ASSIGN_OR_RETURN(tokenizer, LoadSentencePieceTokenizer(sentencepiece.string()));
  } else {
    return absl::NotFoundError(absl::StrCat(
        model_dir,
        ": has neither tokenizer.json nor tokenizer.model (or spiece.model, spm.model); copy the "
        "tokenizer files of the model into the folder"));
  }
  json config = json::object();
  if (fs::exists(dir / "tokenizer_config.json", ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(dir / "tokenizer_config.json"));
    const absl::Status applied = ApplyConfig(text, tokenizer.get());
    if (!applied.ok()) return Annotate(applied, model_dir);
    ASSIGN_OR_RETURN(config, ParseConfig(text));
  }
  const std::string tokenizer_class =
      config.contains("tokenizer_class") && config["tokenizer_class"].is_string()
          ? config["tokenizer_class"].get<std::string>()
          : "";
  if (tokenizer_class == "DebertaV2Tokenizer" || tokenizer_class == "DebertaV2TokenizerFast" ||
      sentencepiece.filename() == "spm.model") {
    const absl::Status applied = ApplyDebertaTemplate(config, tokenizer.get());
    if (!applied.ok()) return Annotate(applied, model_dir);
  }
  SpecialTokens* s = tokenizer->mutable_special();
  if (s->pad_id < 0) s->pad_id = s->eos_id;
  s->add_bos = s->add_bos && s->bos_id >= 0;
  s->add_eos = s->add_eos && s->eos_id >= 0;
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace peftd::data
