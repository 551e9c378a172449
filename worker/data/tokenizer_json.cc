#include "worker/data/tokenizer_json.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/data/bpe_model.h"
#include "worker/data/pretokenizer.h"
#include "worker/data/tokenizer_added_tokens.h"
#include "worker/data/tokenizer_decoder.h"
#include "worker/data/tokenizer_json_fields.h"
#include "worker/data/tokenizer_normalizer.h"

namespace peftd::data {
namespace {

using nlohmann::json;

absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

class HfTokenizer : public TokenizerBase {
 public:
  std::vector<int64_t> Encode(std::string_view text) const override;
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special) const override;
  int64_t VocabSize() const override { return vocab_size_; }
  std::optional<int64_t> TokenToId(std::string_view token) const override;

  absl::Status Load(const json& root);

 private:
  void EncodeNormalized(std::string_view raw, bool first, std::vector<int64_t>* ids) const;
  absl::Status LoadAddedTokens(const json& root);
  void LoadPostProcessor(const json* config);

  std::vector<AddedToken> added_;
  absl::flat_hash_map<std::string, int64_t> added_ids_;
  absl::flat_hash_map<int64_t, size_t> added_by_id_;  // index into added_
  AddedTokenMatcher raw_matcher_;                     // tokens with normalized = false
  AddedTokenMatcher normalized_matcher_;              // tokens with normalized = true
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  int64_t vocab_size_ = 0;
};

absl::Status HfTokenizer::Load(const json& root) {
  if (!root.is_object()) return FieldError("(top level)", "must be an object");
  const json* model = FindField(root, "model");
  if (model == nullptr || !model->is_object()) return FieldError("model", "must be an object");
  // Old files have no model.type; their model is recognised by its fields (BPE has merges).
  std::string type = "BPE";
  if (FindField(*model, "type") != nullptr) {
    ASSIGN_OR_RETURN(type, TypeField(*model, "model"));
  } else if (FindField(*model, "merges") == nullptr) {
    type = "(no merges: not BPE)";
  }
  if (type != "BPE") {
    return FieldError("model.type", absl::StrCat("\"", type,
                                                 "\" is not supported (only BPE; for a "
                                                 "SentencePiece model use tokenizer.model)"));
  }
  ASSIGN_OR_RETURN(model_, BpeModel::FromJson(*model, "model"));
  ASSIGN_OR_RETURN(normalizer_, Normalizer::FromJson(FindField(root, "normalizer"), "normalizer"));
  ASSIGN_OR_RETURN(pre_tokenizer_,
                   PreTokenizer::FromJson(FindField(root, "pre_tokenizer"), "pre_tokenizer"));
  ASSIGN_OR_RETURN(decoder_, Decoder::FromJson(FindField(root, "decoder"), "decoder"));
  RETURN_IF_ERROR(LoadAddedTokens(root));
  vocab_size_ = model_->max_id() + 1;
  for (const AddedToken& t : added_) vocab_size_ = std::max(vocab_size_, t.id + 1);
  LoadPostProcessor(FindField(root, "post_processor"));
  return absl::OkStatus();
}

absl::Status HfTokenizer::LoadAddedTokens(const json& root) {
  const json* list = FindField(root, "added_tokens");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) return FieldError("added_tokens", "must be a list");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& e = (*list)[i];
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!e.is_object()) return FieldError(path, "must be an object");
    AddedToken t;
    ASSIGN_OR_RETURN(t.id, IntField(e, path, "id", -1));
    if (t.id < 0 || t.id > INT32_MAX)
      return FieldError(JoinPath(path, "id"), "must be in [0, 2^31)");
    ASSIGN_OR_RETURN(t.content, StringField(e, path, "content", ""));
    if (t.content.empty())
      return FieldError(JoinPath(path, "content"), "must be a non-empty string");
    ASSIGN_OR_RETURN(t.special, BoolField(e, path, "special", false));
    ASSIGN_OR_RETURN(t.normalized, BoolField(e, path, "normalized", true));
    ASSIGN_OR_RETURN(t.lstrip, BoolField(e, path, "lstrip", false));
    ASSIGN_OR_RETURN(t.rstrip, BoolField(e, path, "rstrip", false));
    ASSIGN_OR_RETURN(t.single_word, BoolField(e, path, "single_word", false));
    if (t.id > model_->max_id() + static_cast<int64_t>(list->size()) + (1 << 16)) {
      return FieldError(JoinPath(path, "id"),
                        absl::StrCat(t.id, " is far past the vocabulary; ids must be dense"));
    }
    added_ids_[t.content] = t.id;
    added_by_id_[t.id] = added_.size();
    added_.push_back(std::move(t));
  }
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const AddedToken& t : added_) {
    if (t.normalized) {
      std::string p = t.content;
      normalizer_->Normalize(&p);
      normalized.push_back(t);
      normalized_patterns.push_back(std::move(p));
    } else {
      raw.push_back(t);
      raw_patterns.push_back(t.content);
    }
  }
  raw_matcher_.Build(raw, raw_patterns);
  normalized_matcher_.Build(normalized, normalized_patterns);
  return absl::OkStatus();
}

// BOS/EOS as the post-processor adds them when HF encodes with add_special_tokens=True.
void HfTokenizer::LoadPostProcessor(const json* config) {
  if (config == nullptr || !config->is_object()) return;
  const json* type = FindField(*config, "type");
  if (type == nullptr || !type->is_string()) return;
  if (*type == "Sequence") {
    const json* list = FindField(*config, "processors");
    if (list == nullptr || !list->is_array()) return;
    for (const json& p : *list) LoadPostProcessor(&p);
    return;
  }
  if (*type == "RobertaProcessing" || *type == "BertProcessing") {
    // {"cls": ["<s>", 0], "sep": ["</s>", 2]}: single cls A sep; pair cls A sep (sep) B sep.
    auto token_id = [&](const char* key) -> int64_t {
      const json* t = FindField(*config, key);
      if (t == nullptr || !t->is_array() || t->size() != 2 || !(*t)[1].is_number_integer()) {
        return -1;
      }
      return (*t)[1].get<int64_t>();
    };
    const int64_t cls = token_id("cls"), sep = token_id("sep");
    if (cls < 0 || sep < 0) return;
    SpecialTokens* s = mutable_special();
    s->bos_id = cls, s->add_bos = true;
    s->eos_id = sep, s->add_eos = true;
    s->pair_middle =
        *type == "RobertaProcessing" ? std::vector<int64_t>{sep, sep} : std::vector<int64_t>{sep};
    return;
  }
  if (*type != "TemplateProcessing") return;
  const json* single = FindField(*config, "single");
  const json* specials = FindField(*config, "special_tokens");
  if (single == nullptr || !single->is_array() || single->empty()) return;
  auto special_id = [&](const json& item) -> int64_t {
    const json* st = FindField(item, "SpecialToken");
    if (st == nullptr) return -1;
    const json* name = FindField(*st, "id");
    if (name == nullptr || !name->is_string()) return -1;
    const std::string& n = name->get_ref<const std::string&>();
    if (specials != nullptr && specials->is_object()) {
      const json* entry = FindField(*specials, n.c_str());
      const json* ids = entry == nullptr ? nullptr : FindField(*entry, "ids");
      if (ids != nullptr && ids->is_array() && ids->size() == 1 && (*ids)[0].is_number_integer()) {
        return (*ids)[0].get<int64_t>();
      }
    }
    return TokenToId(n).value_or(-1);
  };
  SpecialTokens* s = mutable_special();
  if (const int64_t bos = special_id(single->front()); bos >= 0) s->bos_id = bos, s->add_bos = true;
  if (const int64_t eos = special_id(single->back()); eos >= 0) s->eos_id = eos, s->add_eos = true;
}

std::optional<int64_t> HfTokenizer::TokenToId(std::string_view token) const {
  auto it = added_ids_.find(Av(token));
  if (it != added_ids_.end()) return it->second;
  return model_->TokenToId(token);
}

std::vector<int64_t> HfTokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (raw_matcher_.empty()) {
    EncodeNormalized(text, true, &ids);
    return ids;
  }
  std::vector<AddedTokenMatcher::Segment> segments;
  raw_matcher_.Split(text, &segments);
  for (const auto& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
    } else {
      EncodeNormalized(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, &ids);
    }
  }
  return ids;
}

void HfTokenizer::EncodeNormalized(std::string_view raw, bool first,
                                   std::vector<int64_t>* ids) const {
  if (raw.empty()) return;
  std::string normalized_storage;
  std::string_view text = raw;
  if (!normalizer_->identity()) {
    normalized_storage.assign(raw);
    normalizer_->Normalize(&normalized_storage);
    text = normalized_storage;
  }
  std::vector<std::string> words;
  auto encode_words = [&](std::string_view piece, bool piece_first) {
    words.clear();
    pre_tokenizer_->Split(piece, piece_first, &words);
    for (const std::string& w : words) model_->Encode(w, pre_tokenizer_->byte_level(), ids);
  };
  if (normalized_matcher_.empty()) {
    encode_words(text, first);
    return;
  }
  std::vector<AddedTokenMatcher::Segment> segments;
  normalized_matcher_.Split(text, &segments);
  for (const auto& seg : segments) {
    if (seg.id >= 0) {
      ids->push_back(seg.id);
    } else {
      encode_words(text.substr(seg.begin, seg.end - seg.begin), first && seg.begin == 0);
    }
  }
}

std::string HfTokenizer::Decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) {
      const AddedToken& t = added_[it->second];
      if (!(skip_special && t.special)) tokens.push_back(t.content);
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token != nullptr) tokens.push_back(*token);
  }
  return decoder_->Decode(std::move(tokens));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerBase>> TokenizerFromJson(std::string_view json_text) {
  json root;
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: not valid JSON at byte ", e.byte, "; re-download the file"));
  }
  auto tokenizer = std::make_unique<HfTokenizer>();
  RETURN_IF_ERROR(tokenizer->Load(root));
  return std::unique_ptr<TokenizerBase>(std::move(tokenizer));
}

}  // namespace peftd::data
