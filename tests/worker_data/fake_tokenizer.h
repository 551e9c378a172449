// A byte tokenizer for dataset tests and benchmarks: id = byte value (0..255), plus special
// tokens recognised in the text as single ids from 256 up (the Tokenizer contract's "added
// tokens"). Ids are predictable, so tests can state exact input_ids and labels.
#ifndef PEFTD_TESTS_WORKER_DATA_FAKE_TOKENIZER_H_
#define PEFTD_TESTS_WORKER_DATA_FAKE_TOKENIZER_H_

#include <string>
#include <utility>
#include <vector>

#include "worker/data/tokenizer.h"

namespace peftd::data {

class FakeTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kBos = 256;  // "<s>"
  static constexpr int64_t kEos = 257;  // "</s>"

  // Specials 256.. in this order; the chat templates' markers are all known.
  explicit FakeTokenizer(bool add_bos = true, bool has_eos = true)
      : specials_({"<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) {
    special_.bos_id = kBos;
    special_.eos_id = has_eos ? kEos : -1;
    special_.pad_id = has_eos ? kEos : -1;
    special_.add_bos = add_bos;
  }

  SpecialTokens& mutable_special() { return special_; }

  std::vector<int64_t> Encode(std::string_view text) const override {
    std::vector<int64_t> ids;
    ids.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      bool matched = false;
      if (text[i] == '<') {
        for (size_t s = 0; s < specials_.size(); ++s) {
          if (text.compare(i, specials_[s].size(), specials_[s]) == 0) {
            ids.push_back(256 + static_cast<int64_t>(s));
            i += specials_[s].size();
            matched = true;
            break;
          }
        }
      }
      if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special = false) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 256) {
        out.push_back(static_cast<char>(id));
      } else if (!skip_special && id - 256 < static_cast<int64_t>(specials_.size())) {
        out += specials_[id - 256];
      }
    }
    return out;
  }
  int64_t VocabSize() const override { return 256 + static_cast<int64_t>(specials_.size()); }
  std::optional<int64_t> TokenToId(std::string_view token) const override {
    for (size_t s = 0; s < specials_.size(); ++s) {
      if (specials_[s] == token) return 256 + static_cast<int64_t>(s);
    }
    if (token.size() == 1) return static_cast<unsigned char>(token[0]);
    return std::nullopt;
  }
  const SpecialTokens& special() const override { return special_; }

 private:
  std::vector<std::string> specials_;
  SpecialTokens special_;
};

// The ids of `text` under FakeTokenizer (bytes and specials), for expected values.
inline std::vector<int64_t> FakeIds(std::string_view text) { return FakeTokenizer().Encode(text); }

}  // namespace peftd::data

#endif  // PEFTD_TESTS_WORKER_DATA_FAKE_TOKENIZER_H_
