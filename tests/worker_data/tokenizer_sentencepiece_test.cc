// SentencePiece tokenizer.model files other than Llama-2 (which the vectors test covers): Mistral
// v0.1 (BPE with byte fallback) and T5 (unigram, no BOS, EOS appended; tok-t5/SOURCES.md: a literal
// "</s>" in the text is HF's special token, which plain SentencePiece would not see).
#include <gtest/gtest.h>

#include "tests/worker_data/tokenizer_fixtures.h"
#include "worker/data/sentencepiece_tokenizer.h"
#include "worker/data/tokenizer.h"

namespace peftd::data {
namespace {

using testing::Fixtures;

const char* kTexts[] = {
    "Hello world",           " leading space",
    "tabs\tand\nnewlines\n", "caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE6\x88\x91\xE6\x83\xB3",
    "3.14159 = pi",          ""};

TEST(SentencePieceTest, Mistral) {
  auto tok =
      LoadSentencePieceTokenizer((Fixtures() / "tok-mistral" / "tokenizer.model.v1").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.VocabSize(), 32000);
  EXPECT_EQ(t.special().bos_id, 1);
  EXPECT_EQ(t.special().eos_id, 2);
  EXPECT_TRUE(t.special().add_bos);
  for (const char* s : kTexts) EXPECT_EQ(t.Decode(t.Encode(s)), s) << s;
  // The llama emoji is not a piece: byte fallback gives its 4 bytes (<0xF0> = 3 + 0xF0).
  const auto ids = t.Encode("\xF0\x9F\xA6\x99");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[ids.size() - 4], 3 + 0xF0);
  EXPECT_EQ(t.TokenToId("<0x0A>"), 3 + 0x0A);
  EXPECT_EQ(t.Encode("<s>").size(), 1u);
  EXPECT_EQ(t.Decode({1, 22557}, /*skip_special=*/true), t.Decode({22557}));
}

TEST(SentencePieceTest, T5) {
  auto tok = LoadSentencePieceTokenizer((Fixtures() / "tok-t5" / "spiece.model").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.VocabSize(), 32000);
  EXPECT_EQ(t.special().bos_id, -1);
  EXPECT_EQ(t.special().eos_id, 1);
  EXPECT_EQ(t.special().pad_id, 0);
  EXPECT_FALSE(t.special().add_bos);
  EXPECT_TRUE(t.special().add_eos);
  // Unigram T5 has no byte fallback, so only texts of its alphabet round-trip.
  for (const char* s : {"Hello world", "translate English to German: That is good."}) {
    EXPECT_EQ(t.Decode(t.Encode(s)), s) << s;
  }
  const auto ids = t.Encode("Hello</s>");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), 1);
  EXPECT_EQ(t.Decode(ids, /*skip_special=*/true), "Hello");
}

TEST(SentencePieceTest, LoadTokenizerFallsBackToTokenizerModel) {
  const auto dir = testing::TempDir("spfallback");
  std::filesystem::copy_file(Fixtures() / "tok-llama2" / "tokenizer.model",
                             dir / "tokenizer.model");
  auto tok = LoadTokenizer(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("Hello world"), (std::vector<int64_t>{15043, 3186}));
  EXPECT_TRUE((*tok)->special().add_bos);
  EXPECT_EQ((*tok)->special().pad_id, 2);  // no pad piece: eos
  testing::WriteAll(dir / "tokenizer.model", "not a model");
  EXPECT_FALSE(LoadTokenizer(dir.string()).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace peftd::data
