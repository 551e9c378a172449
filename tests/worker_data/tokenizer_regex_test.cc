// The RE2 split regex against Oniguruma's semantics, in particular the \s+(?!\S) look-ahead that
// RE2 cannot run (see pretokenizer_regex.cc), and the refusal of other look-arounds.
#include <gtest/gtest.h>

#include "worker/data/pretokenizer_regex.h"

namespace peftd::data {
namespace {

constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> Pieces(std::string_view pattern, std::string_view text) {
  auto re = SplitRegex::Compile(pattern, "test");
  EXPECT_TRUE(re.ok()) << re.status();
  std::vector<std::pair<size_t, size_t>> m;
  (*re)->FindMatches(text, &m);
  std::vector<std::string> out;
  for (auto [b, e] : m) out.emplace_back(text.substr(b, e - b));
  return out;
}

using V = std::vector<std::string>;

TEST(SplitRegexTest, Gpt2LastSpaceGoesWithNextWord) {
  EXPECT_EQ(Pieces(kGpt2SplitPattern, "Hello  world"), (V{"Hello", " ", " world"}));
  EXPECT_EQ(Pieces(kGpt2SplitPattern, "Hello world"), (V{"Hello", " world"}));
  // A run at the end of the text is one piece.
  EXPECT_EQ(Pieces(kGpt2SplitPattern, "x   "), (V{"x", "   "}));
  // "\t" alone before a word: the look-ahead fails, plain \s+ takes it.
  EXPECT_EQ(Pieces(kGpt2SplitPattern, "a \tb"), (V{"a", " ", "\t", "b"}));
  EXPECT_EQ(Pieces(kGpt2SplitPattern, "it's 42!!"), (V{"it", "'s", " 42", "!!"}));
}

TEST(SplitRegexTest, Llama3NewlinesAndIndent) {
  EXPECT_EQ(Pieces(kLlama3, "\n\n  x"), (V{"\n\n", " ", " x"}));
  EXPECT_EQ(Pieces(kLlama3, "a\n    b"), (V{"a", "\n", "   ", " b"}));
  EXPECT_EQ(Pieces(kLlama3, "12345"), (V{"123", "45"}));
  EXPECT_EQ(Pieces(kLlama3, "I'M"), (V{"I", "'M"}));
}

TEST(SplitRegexTest, UnicodeWhitespaceIsWhitespace) {
  // U+3000 counts as \s, as in Oniguruma: the look-ahead rule splits the run and " ?" (ASCII
  // space only) does not take it. With RE2's ASCII \s both would be one [^\s\p{L}\p{N}]+ piece.
  EXPECT_EQ(Pieces(kGpt2SplitPattern,
                   "a\xE3\x80\x80\xE3\x80\x80"
                   "b"),
            (V{"a", "\xE3\x80\x80", "\xE3\x80\x80", "b"}));
}

TEST(SplitRegexTest, LookaheadAloneSearchesOn) {
  // Without a plain \s+ after it, a single space before a word is no match at all.
  EXPECT_EQ(Pieces(R"(\s+(?!\S))", "a b"), V{});
  EXPECT_EQ(Pieces(R"(\s+(?!\S))", "a  b c "), (V{" ", " "}));
}

TEST(SplitRegexTest, RefusesOtherLookarounds) {
  for (std::string_view p : {R"(a(?=b))", R"((?<!x)y)", R"(\s+(?!\S)x)", R"([\S])"}) {
    auto re = SplitRegex::Compile(p, "tokenizer.json: pre_tokenizer.pattern");
    ASSERT_FALSE(re.ok()) << p;
    EXPECT_NE(re.status().message().find("pre_tokenizer.pattern"), std::string::npos);
  }
  EXPECT_FALSE(SplitRegex::Compile("(unclosed", "p").ok());
}

}  // namespace
}  // namespace peftd::data
