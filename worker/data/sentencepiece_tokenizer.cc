#include "worker/data/sentencepiece_tokenizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/data/sentencepiece_raw.h"
#include "worker/data/tokenizer_added_tokens.h"

namespace peftd::data {
namespace {

class SentencePieceTokenizer : public TokenizerBase {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<SentencePieceRaw> sp) : sp_(std::move(sp)) {
    std::vector<AddedToken> specials;
    std::vector<std::string> patterns;
    for (int id = 0; id < sp_->size(); ++id) {
      if (!sp_->IsControl(id) && !sp_->IsUnknown(id)) continue;
      AddedToken t;
      t.id = id;
      t.content = sp_->IdToPiece(id);
      t.special = true;
      t.normalized = false;
      patterns.push_back(t.content);
      specials.push_back(std::move(t));
    }
    matcher_.Build(specials, patterns);
    SpecialTokens* s = mutable_special();
    s->bos_id = sp_->bos_id();
    s->eos_id = sp_->eos_id();
    s->pad_id = sp_->pad_id();
    s->add_bos = s->bos_id >= 0;
    s->add_eos = s->bos_id < 0 && s->eos_id >= 0;
  }

  std::vector<int64_t> Encode(std::string_view text) const override {
    std::vector<int64_t> ids;
    std::vector<AddedTokenMatcher::Segment> segments;
    matcher_.Split(text, &segments);
    for (const auto& seg : segments) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      for (int id : sp_->Encode(text.substr(seg.begin, seg.end - seg.begin))) ids.push_back(id);
    }
    return ids;
  }

  std::string Decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out;
    std::vector<int> run;
    auto flush = [&]() {
      if (!run.empty()) out += sp_->Decode(run);
      run.clear();
    };
    for (int64_t id : ids) {
      if (id < 0 || id >= sp_->size()) continue;
      if (sp_->IsControl(static_cast<int>(id))) {
        flush();
        if (!skip_special) out += sp_->IdToPiece(static_cast<int>(id));
        continue;
      }
      run.push_back(static_cast<int>(id));
    }
    flush();
    return out;
  }

  int64_t VocabSize() const override { return sp_->size(); }

  std::optional<int64_t> TokenToId(std::string_view token) const override {
    const int id = sp_->PieceToId(token);
    if (id < 0) return std::nullopt;
    return id;
  }

 private:
  std::unique_ptr<SentencePieceRaw> sp_;
  AddedTokenMatcher matcher_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerBase>> LoadSentencePieceTokenizer(const std::string& path) {
  std::string error;
  auto sp = SentencePieceRaw::Load(path, &error);
  if (sp == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a SentencePiece model (", error,
                                                   "); use the tokenizer.model file of the model"));
  }
  return std::unique_ptr<TokenizerBase>(std::make_unique<SentencePieceTokenizer>(std::move(sp)));
}

}  // namespace peftd::data
