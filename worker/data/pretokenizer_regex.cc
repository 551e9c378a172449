// Why there is more here than RE2::FindAndConsume: RE2 has no look-around, and every split
// pattern of GPT-2 / Llama-3 / Qwen2 ends in `\s+(?!\S)|\s+`. In Oniguruma (and tiktoken's
// fancy-regex) `\s+(?!\S)` takes a whitespace run W greedily and backtracks one character when a
// non-space follows, so the run minus its last character is one piece and the last space goes
// with the next word (" " + "Hello"); a run that reaches the end of the text is taken whole; a
// single space before a word makes the alternative fail and the engine tries the alternatives
// after it. We replace the alternative by plain `\s+` in `whole_` and re-decide exactly that:
//   1. Find the leftmost match of `whole_`. Every match of the original pattern is a match of
//      `whole_` at the same place, so the original's leftmost match cannot start earlier.
//   2. A match that is not all whitespace cannot come from the replaced alternative: keep it.
//   3. Otherwise, if the alternatives before the look-ahead one (`before_`) match here, that match
//      is the original's (leftmost-first order).
//   4. Otherwise apply the look-ahead by hand on the maximal whitespace run W at the match start:
//      W at the end of the text -> W; |W| >= 2 characters -> W minus its last character; else the
//      alternatives after it (`after_`) at this position, and when they fail too the original
//      does not match here: search again one character later.
// Other look-arounds cannot be rewritten this way and are refused when the pattern is loaded.
#include "worker/data/pretokenizer_regex.h"

#include <re2/re2.h>

#include "absl/strings/str_cat.h"
#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {
namespace {

// Unicode White_Space, the characters Oniguruma's \s matches in UTF-8 mode (RE2's \s is ASCII).
constexpr std::string_view kWhitespaceRanges =
    R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
constexpr std::string_view kLookaheadAlternative = R"(\s+(?!\S))";

absl::Status Unsupported(const std::string& path, std::string_view pattern, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": regex \"", std::string(pattern), "\" ", std::string(why)));
}

// Splits `pattern` on its top-level '|' (outside groups and bracket classes).
std::vector<std::string> TopLevelAlternatives(std::string_view pattern) {
  std::vector<std::string> alts(1);
  int depth = 0;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      alts.back() += pattern.substr(i, 2);
      ++i;
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
    } else if (c == '[') {
      in_class = true;
      alts.back() += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') alts.back() += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') alts.back() += pattern[++i];
      continue;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    } else if (c == '|' && depth == 0) {
      alts.emplace_back();
      continue;
    }
    alts.back() += c;
  }
  return alts;
}

std::string JoinAlternatives(const std::vector<std::string>& alts, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (i > from) out += '|';
    out += alts[i];
  }
  return out;
}

absl::StatusOr<std::unique_ptr<re2::RE2>> CompileRe2(const std::string& re2_pattern,
                                                     std::string_view original,
                                                     const std::string& path) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_encoding(re2::RE2::Options::EncodingUTF8);
  auto re = std::make_unique<re2::RE2>(re2_pattern, options);
  if (!re->ok()) {
    return Unsupported(path, original, absl::StrCat("does not compile with RE2: ", re->error()));
  }
  return re;
}

bool AllWhitespace(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (!IsUnicodeWhitespace(NextCodePoint(s, &pos))) return false;
  }
  return !s.empty();
}

}  // namespace

absl::StatusOr<std::string> TranslateToRe2(std::string_view pattern, const std::string& path) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kWhitespaceRanges;
        } else {
          absl::StrAppend(&out, "[", std::string(kWhitespaceRanges), "]");
        }
      } else if (e == 'S') {
        if (in_class)
          return Unsupported(path, pattern, "uses \\S inside [...], which RE2 cannot express");
        absl::StrAppend(&out, "[^", std::string(kWhitespaceRanges), "]");
      } else {
        out += '\\';
        // Keep a multi-byte escaped character whole.
        const size_t len = CodePointLength(pattern, i);
        out += pattern.substr(i, len);
        i += len - 1;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
        const size_t close = pattern.find(":]", i + 2);
        if (close == std::string_view::npos)
          return Unsupported(path, pattern, "has an unclosed [:class:]");
        out += pattern.substr(i, close + 2 - i);
        i = close + 1;
        continue;
      }
      if (c == '[')
        return Unsupported(path, pattern, "nests bracket classes, which RE2 cannot express");
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == '(' && pattern.substr(i).rfind("(?", 0) == 0) {
      const std::string_view rest = pattern.substr(i);
      if (rest.rfind("(?=", 0) == 0 || rest.rfind("(?!", 0) == 0 || rest.rfind("(?<=", 0) == 0 ||
          rest.rfind("(?<!", 0) == 0) {
        return Unsupported(path, pattern,
                           "uses a look-around other than a top-level \\s+(?!\\S) alternative; "
                           "RE2 cannot run it");
      }
    }
    out += c;
  }
  if (in_class) return Unsupported(path, pattern, "has an unclosed [...]");
  return out;
}

absl::StatusOr<std::unique_ptr<SplitRegex>> SplitRegex::Compile(std::string_view pattern,
                                                                const std::string& path) {
  std::vector<std::string> alts = TopLevelAlternatives(pattern);
  size_t lookahead = alts.size();
  for (size_t i = 0; i < alts.size(); ++i) {
    if (alts[i] == kLookaheadAlternative) {
      if (lookahead != alts.size()) {
        return Unsupported(path, pattern, "has \\s+(?!\\S) twice");
      }
      lookahead = i;
    }
  }
  std::unique_ptr<SplitRegex> split(new SplitRegex());
  split->has_lookahead_ = lookahead != alts.size();
  auto translate = [&](size_t from, size_t to) -> absl::StatusOr<std::string> {
    std::string joined = JoinAlternatives(alts, from, to);
    return TranslateToRe2(joined, path);
  };
  if (!split->has_lookahead_) {
    auto re2_pattern = TranslateToRe2(pattern, path);
    if (!re2_pattern.ok()) return re2_pattern.status();
    auto re = CompileRe2(*re2_pattern, pattern, path);
    if (!re.ok()) return re.status();
    split->whole_ = std::move(*re);
    return split;
  }
  std::vector<std::string> replaced = alts;
  replaced[lookahead] = R"(\s+)";
  auto whole = TranslateToRe2(JoinAlternatives(replaced, 0, replaced.size()), path);
  if (!whole.ok()) return whole.status();
  auto whole_re = CompileRe2(*whole, pattern, path);
  if (!whole_re.ok()) return whole_re.status();
  split->whole_ = std::move(*whole_re);
  if (lookahead > 0) {
    auto before = translate(0, lookahead);
    if (!before.ok()) return before.status();
    auto re = CompileRe2(*before, pattern, path);
    if (!re.ok()) return re.status();
    split->before_ = std::move(*re);
  }
  if (lookahead + 1 < alts.size()) {
    auto after = translate(lookahead + 1, alts.size());
    if (!after.ok()) return after.status();
    auto re = CompileRe2(*after, pattern, path);
    if (!re.ok()) return re.status();
    split->after_ = std::move(*re);
  }
  return split;
}

SplitRegex::~SplitRegex() = default;

bool SplitRegex::MatchAnchored(const re2::RE2* re, std::string_view text, size_t pos,
                               size_t* end) const {
  if (re == nullptr) return false;
  re2::StringPiece whole(text.data(), text.size());
  re2::StringPiece m;
  if (!re->Match(whole, pos, text.size(), re2::RE2::ANCHOR_START, &m, 1)) return false;
  *end = static_cast<size_t>(m.data() - text.data()) + m.size();
  return true;
}

bool SplitRegex::NextMatch(std::string_view text, size_t pos, size_t* begin, size_t* end) const {
  re2::StringPiece whole(text.data(), text.size());
  while (pos < text.size()) {
    re2::StringPiece m;
    // Anchored first: with these patterns nearly every match starts where the previous ended, and
    // an anchored DFA run is cheaper than a search. It finds the leftmost match when one starts
    // at `pos`, so the result is the same as searching.
    if (!whole_->Match(whole, pos, text.size(), re2::RE2::ANCHOR_START, &m, 1) &&
        !whole_->Match(whole, pos, text.size(), re2::RE2::UNANCHORED, &m, 1)) {
      return false;
    }
    size_t b = static_cast<size_t>(m.data() - text.data());
    size_t e = b + m.size();
    if (!has_lookahead_ || !AllWhitespace(text.substr(b, e - b))) {
      if (e == b) {
        // An empty match: skip it (HF keeps only non-empty pieces) and move on one character.
        pos = b + CodePointLength(text, b);
        continue;
      }
      *begin = b, *end = e;
      return true;
    }
    size_t before_end = 0;
    if (MatchAnchored(before_.get(), text, b, &before_end)) {
      if (before_end > b) {
        *begin = b, *end = before_end;
        return true;
      }
    }
    // The maximal whitespace run at b, and where its last character starts.
    size_t run_end = b;
    size_t last_start = b;
    size_t chars = 0;
    while (run_end < text.size()) {
      size_t next = run_end;
      if (!IsUnicodeWhitespace(NextCodePoint(text, &next))) break;
      last_start = run_end;
      run_end = next;
      ++chars;
    }
    if (run_end == text.size()) {
      *begin = b, *end = run_end;
      return true;
    }
    if (chars >= 2) {
      *begin = b, *end = last_start;
      return true;
    }
    size_t after_end = 0;
    if (MatchAnchored(after_.get(), text, b, &after_end) && after_end > b) {
      *begin = b, *end = after_end;
      return true;
    }
    pos = b + CodePointLength(text, b);
  }
  return false;
}

void SplitRegex::FindMatches(std::string_view text,
                             std::vector<std::pair<size_t, size_t>>* out) const {
  size_t pos = 0;
  size_t b = 0;
  size_t e = 0;
  while (pos < text.size() && NextMatch(text, pos, &b, &e)) {
    out->emplace_back(b, e);
    pos = e;
  }
}

}  // namespace peftd::data
