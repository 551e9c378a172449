// Constructed tiny tokenizer.json files with hand-computed ids: merge priority and ties, both
// merge forms, byte fallback, unknown tokens, added tokens (longest match, lstrip, rstrip,
// single_word, normalized), Metaspace prepend schemes and split, decoders.
#include <gtest/gtest.h>

#include <thread>

#include "nlohmann/json.hpp"
#include "worker/data/tokenizer_json.h"

namespace peftd::data {
namespace {

using nlohmann::json;
using Ids = std::vector<int64_t>;

json Bpe(json vocab, json merges) {
  return {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
}

std::unique_ptr<TokenizerBase> Load(const json& j) {
  auto tok = TokenizerFromJson(j.dump());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

const json kAbcVocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};

TEST(BpeTest, LowerRankMergesFirst) {
  // (b,c) ranks before (a,b): "abc" -> a + bc -> abc only if (a,bc) is a merge.
  auto t = Load({{"model", Bpe(kAbcVocab, {"b c", "a b"})}});
  EXPECT_EQ(t->Encode("abc"), (Ids{0, 4}));
  t = Load({{"model", Bpe(kAbcVocab, {"a b", "b c"})}});
  EXPECT_EQ(t->Encode("abc"), (Ids{3, 2}));
  t = Load({{"model", Bpe(kAbcVocab, {"b c", "a b", "a bc"})}});
  EXPECT_EQ(t->Encode("abc"), (Ids{5}));
}

TEST(BpeTest, PairFormEqualsStringForm) {
  auto s = Load({{"model", Bpe(kAbcVocab, {"a b", "ab c"})}});
  auto p = Load({{"model", Bpe(kAbcVocab,
                               json::array({json::array({"a", "b"}), json::array({"ab", "c"})}))}});
  EXPECT_EQ(s->Encode("abcab"), (Ids{5, 3}));
  EXPECT_EQ(p->Encode("abcab"), (Ids{5, 3}));
}

TEST(BpeTest, EqualRanksMergeLeftmostFirst) {
  auto t = Load({{"model", Bpe({{"a", 0}, {"aa", 1}}, {"a a"})}});
  EXPECT_EQ(t->Encode("aaa"), (Ids{1, 0}));
  EXPECT_EQ(t->Encode("aaaa"), (Ids{1, 1}));
}

TEST(BpeTest, LongWordUsesSameOrder) {
  // 300 symbols: the heap must give the same result as merging pair by pair.
  auto t = Load({{"model", Bpe({{"a", 0}, {"b", 1}, {"ab", 2}, {"abab", 3}}, {"a b", "ab ab"})}});
  std::string text;
  for (int i = 0; i < 150; ++i) text += "ab";
  const Ids ids = t->Encode(text);
  EXPECT_EQ(ids, Ids(75, 3));
}

TEST(BpeTest, IgnoreMergesTakesWholeWord) {
  // "abc" is in the vocabulary but no merge builds it.
  json m = Bpe(kAbcVocab, {"a b"});
  EXPECT_EQ(Load({{"model", m}})->Encode("abc"), (Ids{3, 2}));
  m["ignore_merges"] = true;
  EXPECT_EQ(Load({{"model", m}})->Encode("abc"), (Ids{5}));
}

json ByteFallbackModel() {
  json vocab = {{"<unk>", 0}, {"\xE2\x96\x81", 1}, {"h", 2}, {"i", 3}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 4 + b;
  }
  json m = Bpe(vocab, json::array());
  m["byte_fallback"] = true;
  m["unk_token"] = "<unk>";
  return m;
}

const json kLlamaDecoder = {
    {"type", "Sequence"},
    {"decoders",
     {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
      {{"type", "ByteFallback"}},
      {{"type", "Fuse"}},
      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};

TEST(BpeTest, ByteFallbackEncodesUnknownCharactersAsBytes) {
  auto t = Load({{"model", ByteFallbackModel()}, {"decoder", kLlamaDecoder}});
  // "é" = C3 A9 -> <0xC3> <0xA9> = 4 + 0xC3, 4 + 0xA9.
  EXPECT_EQ(t->Encode("h\xC3\xA9i"), (Ids{2, 4 + 0xC3, 4 + 0xA9, 3}));
  EXPECT_EQ(t->Decode({2, 4 + 0xC3, 4 + 0xA9, 3}), "h\xC3\xA9i");
  // A lone lead byte is not UTF-8: each byte token becomes U+FFFD, as in HF.
  EXPECT_EQ(t->Decode({2, 4 + 0xC3, 3}), "h\xEF\xBF\xBDi");
  // Invalid UTF-8 input still encodes byte by byte.
  EXPECT_EQ(t->Encode("\xFF"), (Ids{4 + 0xFF}));
}

TEST(BpeTest, UnknownTokenFusesWhenAsked) {
  json m = Bpe({{"<unk>", 0}, {"a", 1}}, json::array());
  m["unk_token"] = "<unk>";
  EXPECT_EQ(Load({{"model", m}})->Encode("axya"), (Ids{1, 0, 0, 1}));
  m["fuse_unk"] = true;
  EXPECT_EQ(Load({{"model", m}})->Encode("axya"), (Ids{1, 0, 1}));
  // Without an unknown token unknown characters are dropped (HF does the same).
  m.erase("unk_token");
  EXPECT_EQ(Load({{"model", m}})->Encode("axya"), (Ids{1, 1}));
}

json CharModel() {
  return Bpe({{"a", 0}, {"b", 1}, {" ", 2}, {"<", 3}, {"m", 4}, {">", 5}}, json::array());
}

json Added(int id, const std::string& content, bool lstrip = false, bool rstrip = false,
           bool single_word = false, bool normalized = false) {
  return {{"id", id},         {"content", content}, {"single_word", single_word},
          {"lstrip", lstrip}, {"rstrip", rstrip},   {"normalized", normalized},
          {"special", true}};
}

TEST(AddedTokensTest, StripRules) {
  EXPECT_EQ(Load({{"model", CharModel()}, {"added_tokens", {Added(10, "<m>")}}})->Encode("a <m> b"),
            (Ids{0, 2, 10, 2, 1}));
  EXPECT_EQ(Load({{"model", CharModel()}, {"added_tokens", {Added(10, "<m>", true)}}})
                ->Encode("a  <m> b"),
            (Ids{0, 10, 2, 1}));
  EXPECT_EQ(Load({{"model", CharModel()}, {"added_tokens", {Added(10, "<m>", false, true)}}})
                ->Encode("a <m>  b"),
            (Ids{0, 2, 10, 1}));
  EXPECT_EQ(Load({{"model", CharModel()}, {"added_tokens", {Added(10, "<m>", true, true)}}})
                ->Encode("a <m> b"),
            (Ids{0, 10, 1}));
}

TEST(AddedTokensTest, SingleWord) {
  auto t = Load({{"model", CharModel()}, {"added_tokens", {Added(10, "<m>", false, false, true)}}});
  EXPECT_EQ(t->Encode("a<m>b"), (Ids{0, 3, 4, 5, 1}));
  EXPECT_EQ(t->Encode("a <m> b"), (Ids{0, 2, 10, 2, 1}));
  EXPECT_EQ(t->Encode("<m>"), (Ids{10}));
}

TEST(AddedTokensTest, LongestMatchFirst) {
  auto t = Load({{"model", CharModel()},
                 {"added_tokens", {Added(10, "<m"), Added(11, "<m>"), Added(12, "m>b")}}});
  // At the leftmost match position the longest token wins; "m>b" overlapping it is not seen.
  EXPECT_EQ(t->Encode("a<m>b"), (Ids{0, 11, 1}));
  EXPECT_EQ(t->Encode("<ma"), (Ids{10, 0}));
  EXPECT_EQ(t->Decode({0, 11, 1}), "a <m> b");  // no decoder: tokens joined with spaces
  EXPECT_EQ(t->Decode({0, 11, 1}, /*skip_special=*/true), "a b");
  EXPECT_EQ(t->TokenToId("<m>"), 11);
  EXPECT_EQ(t->VocabSize(), 13);
}

TEST(AddedTokensTest, NormalizedTokensMatchNormalizedText) {
  // Lowercase runs first; the normalized token "ab" then matches "AB" in the input, the raw one
  // "<m>" matches before normalization.
  json j = {{"model", CharModel()},
            {"normalizer", {{"type", "Lowercase"}}},
            {"added_tokens", {Added(10, "<m>"), Added(11, "AB", false, false, false, true)}}};
  auto t = Load(j);
  EXPECT_EQ(t->Encode("aABb<m>"), (Ids{0, 11, 1, 10}));
}

json MetaspaceVocab() {
  // ▁=0 h=1 i=2 hi=3 ▁hi=4 i▁=5
  return {{"\xE2\x96\x81", 0}, {"h", 1}, {"i", 2}, {"hi", 3}, {"\xE2\x96\x81hi", 4},
          {"i\xE2\x96\x81", 5}};
}

json Metaspace(const std::string& scheme, bool split) {
  return {{"type", "Metaspace"},
          {"replacement", "\xE2\x96\x81"},
          {"prepend_scheme", scheme},
          {"split", split}};
}

TEST(MetaspaceTest, PrependSchemes) {
  const json merges = {"h i", "\xE2\x96\x81 hi"};
  auto make = [&](const std::string& scheme) {
    return Load(
        {{"model", Bpe(MetaspaceVocab(), merges)},
         {"pre_tokenizer", Metaspace(scheme, true)},
         {"added_tokens", {Added(9, "<x>")}},
         {"decoder",
          {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", scheme}}}});
  };
  EXPECT_EQ(make("always")->Encode("hi hi"), (Ids{4, 4}));
  EXPECT_EQ(make("never")->Encode("hi hi"), (Ids{3, 4}));
  // "first": only the start of the input gets the ▁, not the text after an added token.
  EXPECT_EQ(make("first")->Encode("hi<x>hi"), (Ids{4, 9, 3}));
  EXPECT_EQ(make("always")->Encode("hi<x>hi"), (Ids{4, 9, 4}));
  EXPECT_EQ(make("first")->Decode({4, 4}), "hi hi");
  EXPECT_EQ(make("never")->Decode({3, 4}), "hi hi");
}

TEST(MetaspaceTest, SplitFalseMergesAcrossWords) {
  const json merges = {"i \xE2\x96\x81", "h i", "\xE2\x96\x81 hi"};
  auto split = Load(
      {{"model", Bpe(MetaspaceVocab(), merges)}, {"pre_tokenizer", Metaspace("always", true)}});
  auto whole = Load(
      {{"model", Bpe(MetaspaceVocab(), merges)}, {"pre_tokenizer", Metaspace("always", false)}});
  EXPECT_EQ(split->Encode("hi hi"), (Ids{4, 4}));
  // ▁ h i ▁ h i: (i,▁) first, then (h,i) on the right; nothing merges with "i▁".
  EXPECT_EQ(whole->Encode("hi hi"), (Ids{0, 1, 5, 3}));
}

TEST(MetaspaceTest, LegacyNormalizerLayout) {
  // Llama-2's legacy form: normalizer Prepend + Replace, no pre-tokenizer.
  json j = {
      {"model", Bpe(MetaspaceVocab(), {"h i", "\xE2\x96\x81 hi"})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"decoder", kLlamaDecoder}};
  auto t = Load(j);
  EXPECT_EQ(t->Encode("hi hi"), (Ids{4, 4}));
  EXPECT_EQ(t->Decode({4, 4}), "hi hi");
  EXPECT_EQ(t->Encode(""), Ids{});
}

TEST(ByteLevelTest, AddPrefixSpaceAndDecoder) {
  // Byte-level: ' ' is "Ġ" (U+0120).
  json vocab = {{"\xC4\xA0", 0},
                {"a", 1},
                {"\xC4\xA0"
                 "a",
                 2}};
  json j = {{"model", Bpe(vocab, {"\xC4\xA0 a"})},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", true}}},
            {"decoder", {{"type", "ByteLevel"}}}};
  auto t = Load(j);
  EXPECT_EQ(t->Encode("a a"), (Ids{2, 2}));
  EXPECT_EQ(t->Decode({2, 2}), " a a");
}

TEST(PostProcessorTest, TemplateSetsBosAndEos) {
  json j = {{"model", CharModel()},
            {"added_tokens", {Added(10, "<s>"), Added(11, "</s>")}},
            {"post_processor",
             {{"type", "TemplateProcessing"},
              {"single",
               {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {10}}, {"tokens", {"<s>"}}}}}}}}};
  auto t = Load(j);
  EXPECT_EQ(t->special().bos_id, 10);
  EXPECT_TRUE(t->special().add_bos);
  EXPECT_EQ(t->special().eos_id, 11);
  EXPECT_TRUE(t->special().add_eos);
}

TEST(BpeTest, ConcurrentEncodesAgree) {
  auto t = Load(
      {{"model", Bpe(kAbcVocab, {"b c", "a b", "a bc"})},
       {"pre_tokenizer",
        {{"type", "Split"}, {"pattern", {{"String", "c"}}}, {"behavior", "MergedWithPrevious"}}}});
  std::string text;
  for (int i = 0; i < 2000; ++i) text += (i % 3 == 0) ? "abc" : (i % 3 == 1 ? "ab" : "bc");
  const Ids expected = t->Encode(text);
  Ids a, b;
  std::thread t1([&] { a = t->Encode(text); });
  std::thread t2([&] { b = t->Encode(text); });
  t1.join();
  t2.join();
  EXPECT_EQ(a, expected);
  EXPECT_EQ(b, expected);
}

}  // namespace
}  // namespace peftd::data
