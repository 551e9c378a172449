#include "worker/data/tokenizer_added_tokens.h"

#include <algorithm>

#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {

void AddedTokenMatcher::Build(const std::vector<AddedToken>& tokens,
                              const std::vector<std::string>& patterns) {
  tokens_.clear();
  nodes_.assign(1, Node());
  root_.fill(-1);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::string& p = patterns[t];
    if (p.empty()) continue;
    const int32_t index = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(tokens[t]);
    int32_t node = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const auto byte = static_cast<uint8_t>(p[i]);
      int32_t next = Child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& ch = nodes_[node].children;
        ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(byte, int32_t{-1})),
                  {byte, next});
        if (node == 0) root_[byte] = next;
      }
      node = next;
    }
    // The same pattern twice: the later token wins, like a later insert in HF's maps.
    nodes_[node].token = index;
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  if (node == 0) return root_[byte];
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(byte, int32_t{-1}));
  return it != ch.end() && it->first == byte ? it->second : -1;
}

int32_t AddedTokenMatcher::LongestAt(std::string_view text, size_t pos, size_t* end) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token >= 0) best = nodes_[node].token, *end = i + 1;
  }
  return best;
}

namespace {

bool EndsWithWord(std::string_view s) {
  if (s.empty()) return false;
  // Step back to the start of the last character.
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 &&
         s.size() - start < 4) {
    --start;
  }
  size_t pos = start;
  const char32_t c = NextCodePoint(s, &pos);
  if (pos != s.size()) return false;  // invalid tail: not a word character
  return IsWordCharacter(c);
}

bool StartsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t pos = 0;
  return IsWordCharacter(NextCodePoint(s, &pos));
}

// Start of the whitespace that ends `s[0, end)`.
size_t WhitespaceBefore(std::string_view s, size_t end) {
  size_t begin = end;
  while (begin > 0) {
    size_t start = begin - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 &&
           begin - start < 4) {
      --start;
    }
    size_t pos = start;
    const char32_t c = NextCodePoint(s, &pos);
    if (pos != begin || !IsUnicodeWhitespace(c)) break;
    begin = start;
  }
  return begin;
}

// End of the whitespace that starts at `s[begin]`.
size_t WhitespaceAfter(std::string_view s, size_t begin) {
  size_t end = begin;
  while (end < s.size()) {
    size_t next = end;
    if (!IsUnicodeWhitespace(NextCodePoint(s, &next))) break;
    end = next;
  }
  return end;
}

}  // namespace

void AddedTokenMatcher::Split(std::string_view text, std::vector<Segment>* out) const {
  if (text.empty()) return;
  size_t start_offset = 0;  // end of the previous segment
  size_t pos = 0;
  while (pos < text.size()) {
    if (root_[static_cast<uint8_t>(text[pos])] < 0) {
      ++pos;
      continue;
    }
    size_t match_end = 0;
    const int32_t t = LongestAt(text, pos, &match_end);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[t];
    size_t begin = pos;
    size_t end = match_end;
    // As in HF, the search goes on after a discarded match, not inside it.
    pos = match_end;
    if (token.single_word &&
        (EndsWithWord(text.substr(0, begin)) || StartsWithWord(text.substr(end)))) {
      continue;
    }
    if (token.lstrip) begin = std::max(WhitespaceBefore(text, begin), start_offset);
    if (token.rstrip) end = WhitespaceAfter(text, end);
    if (start_offset < begin) out->push_back({start_offset, begin, -1});
    out->push_back({begin, end, token.id});
    start_offset = end;
    pos = std::max(pos, end);
  }
  if (start_offset < text.size()) out->push_back({start_offset, text.size(), -1});
}

}  // namespace peftd::data
