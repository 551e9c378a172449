// A Hugging Face / tiktoken split regex (Oniguruma syntax) run with RE2: no per-call compilation,
// linear time. Finds the same matches as the original engine for the GPT-2, Llama-3 and Qwen2
// patterns; patterns RE2 cannot express exactly are refused at load time.
#ifndef PEFTD_WORKER_DATA_PRETOKENIZER_REGEX_H_
#define PEFTD_WORKER_DATA_PRETOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace re2 {
class RE2;
}

namespace peftd::data {

// GPT-2's pattern, also what ByteLevel(use_regex=true) splits with.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class SplitRegex {
 public:
  // Compiles `pattern`; `path` names the JSON field in errors.
  static absl::StatusOr<std::unique_ptr<SplitRegex>> Compile(std::string_view pattern,
                                                             const std::string& path);
  ~SplitRegex();

  // Appends the [begin, end) byte ranges of the successive non-empty, non-overlapping matches in
  // `text` (leftmost-first, as Oniguruma's find_iter).
  void FindMatches(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  SplitRegex() = default;
  // The match that starts at or after `pos`, or false.
  bool NextMatch(std::string_view text, size_t pos, size_t* begin, size_t* end) const;
  bool MatchAnchored(const re2::RE2* re, std::string_view text, size_t pos, size_t* end) const;

  std::unique_ptr<re2::RE2> whole_;   // the pattern, look-ahead alternative replaced by \s+
  std::unique_ptr<re2::RE2> before_;  // alternatives before the look-ahead one (may be null)
  std::unique_ptr<re2::RE2> after_;   // alternatives after it (may be null)
  bool has_lookahead_ = false;
};

// Translates Oniguruma-only syntax to RE2 (\s and \S as Unicode White_Space, like Oniguruma's);
// exposed for tests. Fails on look-around and on \S inside a bracket class.
absl::StatusOr<std::string> TranslateToRe2(std::string_view pattern, const std::string& path);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_PRETOKENIZER_REGEX_H_
