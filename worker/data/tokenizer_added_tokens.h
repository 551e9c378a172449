// Added and special tokens ("<|im_start|>", "<s>") found in input text before the model runs, as
// HF's AddedVocabulary does: leftmost-longest match, then the single_word / lstrip / rstrip rules.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_ADDED_TOKENS_H_
#define PEFTD_WORKER_DATA_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peftd::data {

struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = false;
  bool normalized = false;   // matched in normalized text (else in the raw input)
  bool lstrip = false;       // takes the whitespace on its left
  bool rstrip = false;       // takes the whitespace on its right
  bool single_word = false;  // only matched when not inside a word
};

class AddedTokenMatcher {
 public:
  // A piece of the text: [begin, end) and the added token it is, or -1 for text to tokenize.
  struct Segment {
    size_t begin;
    size_t end;
    int64_t id;
  };

  // `patterns[i]` is what token `tokens[i]` looks like in the text it is matched in (its content,
  // normalized for normalized tokens). Empty patterns are ignored.
  void Build(const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns);
  bool empty() const { return tokens_.empty(); }

  // Splits `text` into segments covering it in order (none when `text` is empty).
  void Split(std::string_view text, std::vector<Segment>* out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t token = -1;                                 // index into tokens_
  };
  int32_t Child(int32_t node, uint8_t byte) const;
  // The longest pattern starting at `pos` (token index, its end), or -1.
  int32_t LongestAt(std::string_view text, size_t pos, size_t* end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;
  std::array<int32_t, 256> root_{};  // child of the root for each first byte, or -1
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_ADDED_TOKENS_H_
