// rank_pattern / alpha_pattern keys resolved as PEFT's get_pattern_key does.
#include "adapters/module_patterns.h"

#include <gtest/gtest.h>

namespace peftd::adapters {
namespace {

constexpr char kQ0[] = "model.layers.0.self_attn.q_proj";
constexpr char kQ10[] = "model.layers.10.self_attn.q_proj";

TEST(PatternKeys, SuffixKeysMatchADotSeparatedTail) {
  auto keys = PatternKeys::Compile({"q_proj"}, "rank_pattern");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->Match(kQ0), 0u);
  EXPECT_EQ(keys->Match("model.layers.0.self_attn.k_proj"), std::nullopt);
  // A tail, not a substring: "proj" does not match "q_proj".
  auto partial = PatternKeys::Compile({"proj"}, "rank_pattern");
  EXPECT_EQ(partial->Match(kQ0), std::nullopt);
}

TEST(PatternKeys, RegexKeysAndTheFirstMatchInOrderWins) {
  auto keys = PatternKeys::Compile({"layers\\.1\\d*\\..*q_proj", "q_proj"}, "alpha_pattern");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->Match(kQ10), 0u);
  EXPECT_EQ(keys->Match(kQ0), 1u);
  // A dot in a full name is a regex dot too, yet it cannot reach another layer's module.
  auto full = PatternKeys::Compile({"model.layers.1.self_attn.q_proj"}, "rank_pattern");
  EXPECT_EQ(full->Match("model.layers.1.self_attn.q_proj"), 0u);
  EXPECT_EQ(full->Match(kQ10), std::nullopt);
}

TEST(PatternKeys, AnExactNameWinsOverAnEarlierRegex) {
  auto keys = PatternKeys::Compile({"q_proj", kQ0}, "rank_pattern");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->Match(kQ0), 1u);
  EXPECT_EQ(keys->Match(kQ10), 0u);
}

TEST(PatternKeys, ABadRegexNamesTheFieldAndKey) {
  auto keys = PatternKeys::Compile({"q_proj", "v_proj["}, "alpha_pattern");
  ASSERT_FALSE(keys.ok());
  EXPECT_NE(keys.status().message().find("alpha_pattern: key 'v_proj[' is not a valid regex"),
            std::string::npos)
      << keys.status();
}

}  // namespace
}  // namespace peftd::adapters
