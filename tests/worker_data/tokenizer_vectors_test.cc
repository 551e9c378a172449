// The real tokenizers against the ids Hugging Face gives for the 46 llama.cpp strings
// (add_special_tokens=False): Llama-2 (tokenizer.json and tokenizer.model), GPT-2, Llama-3 and
// Qwen2 (their tokenizer.json assembled from the stored parts), plus round trips and special
// tokens.
#include <gtest/gtest.h>

#include "tests/worker_data/tokenizer_fixtures.h"
#include "worker/data/sentencepiece_tokenizer.h"
#include "worker/data/tokenizer.h"
#include "worker/data/tokenizer_json.h"

namespace peftd::data {
namespace {

using testing::Fixtures;
using testing::LlamaCppVectors;
using testing::TempDir;

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Checks every vector; `lossless`: decode(encode(s)) must give s back.
void ExpectVectors(const Tokenizer& tok, const std::string& model, bool lossless) {
  int checked = 0;
  for (const auto& v : LlamaCppVectors(model)) {
    EXPECT_EQ(tok.Encode(v.text), v.ids) << model << " \"" << Printable(v.text) << "\"";
    if (lossless)
      EXPECT_EQ(tok.Decode(v.ids), v.text) << model << " \"" << Printable(v.text) << "\"";
    ++checked;
  }
  EXPECT_EQ(checked, 46);
}

class Llama3Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = testing::AssembleLlama3(TempDir("llama3"));
    auto tok = LoadTokenizer(dir.string());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
    std::filesystem::remove_all(dir);
  }
  static void TearDownTestSuite() { delete tok_; }
  static Tokenizer* tok_;
};
Tokenizer* Llama3Test::tok_ = nullptr;

TEST_F(Llama3Test, AllVectors) { ExpectVectors(*tok_, "llama-bpe", /*lossless=*/true); }

TEST_F(Llama3Test, SpecialTokensFromPostProcessor) {
  // No tokenizer_config.json: the TemplateProcessing "<|begin_of_text|> $A" sets BOS.
  EXPECT_EQ(tok_->special().bos_id, 128000);
  EXPECT_TRUE(tok_->special().add_bos);
  EXPECT_FALSE(tok_->special().add_eos);
  EXPECT_EQ(tok_->VocabSize(), 128256);
  EXPECT_EQ(tok_->TokenToId("<|eot_id|>"), 128009);
  // Chat markup: specials are single ids wherever they are written.
  const auto ids = tok_->Encode("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 128006);
  EXPECT_EQ(ids.back(), 128009);
  EXPECT_EQ(tok_->Decode(ids, /*skip_special=*/true), "user\n\nHi");
  EXPECT_EQ(tok_->Decode(ids), "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

class Qwen2Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = testing::AssembleQwen2(TempDir("qwen2"));
    auto tok = LoadTokenizer(dir.string());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
    std::filesystem::remove_all(dir);
  }
  static void TearDownTestSuite() { delete tok_; }
  static Tokenizer* tok_;
};
Tokenizer* Qwen2Test::tok_ = nullptr;

// The vectors are NFC already, so NFC normalization is lossless on them.
TEST_F(Qwen2Test, AllVectors) { ExpectVectors(*tok_, "qwen2", /*lossless=*/true); }

TEST_F(Qwen2Test, SpecialTokensFromConfig) {
  const SpecialTokens& s = tok_->special();
  EXPECT_EQ(s.bos_id, -1);  // "bos_token": null
  EXPECT_EQ(s.eos_id, 151643);
  EXPECT_EQ(s.pad_id, 151643);
  EXPECT_FALSE(s.add_bos);
  const auto ids = tok_->Encode("<|im_start|>system\nYou are<|im_end|>");
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids.back(), 151645);
}

TEST_F(Qwen2Test, NfcNormalizes) {
  // "e" + combining acute is "é" after NFC.
  EXPECT_EQ(tok_->Encode("caf\x65\xCC\x81"), tok_->Encode("caf\xC3\xA9"));
}

TEST(Gpt2Test, AllVectors) {
  auto tok = LoadTokenizer((Fixtures() / "tok-gpt2").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectVectors(**tok, "gpt-2", /*lossless=*/true);
  const SpecialTokens& s = (*tok)->special();
  EXPECT_EQ(s.bos_id, 50256);
  EXPECT_EQ(s.eos_id, 50256);
  EXPECT_EQ(s.pad_id, 50256);  // no pad token: falls back to eos
  EXPECT_FALSE(s.add_bos);     // post_processor ByteLevel adds nothing
  EXPECT_EQ((*tok)->VocabSize(), 50257);
}

TEST(Gpt2Test, EndOfTextIsSingleWordWithStrip) {
  auto tok = LoadTokenizer((Fixtures() / "tok-gpt2").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  // lstrip/rstrip: the spaces around <|endoftext|> belong to it.
  EXPECT_EQ((*tok)->Encode("Hello <|endoftext|> world"),
            (std::vector<int64_t>{15496, 50256, 6894}));
  // single_word: inside a word it is plain text.
  const auto inside = (*tok)->Encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), 50256), 0);
}

TEST(Llama2JsonTest, AllVectors) {
  auto tok = LoadTokenizer((Fixtures() / "tok-llama2").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Legacy Llama-2 layout: Prepend("▁") + Replace, decoder Strip removes the ▁ again.
  ExpectVectors(**tok, "llama-spm", /*lossless=*/true);
  const SpecialTokens& s = (*tok)->special();
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_EQ(s.pad_id, 0);  // "pad_token": "<unk>"
  EXPECT_TRUE(s.add_bos);
  EXPECT_FALSE(s.add_eos);
  EXPECT_EQ((*tok)->Encode("<s>Hi</s>").front(), 1);
  EXPECT_EQ((*tok)->Encode("<s>Hi</s>").back(), 2);
}

TEST(Llama2SentencePieceTest, AllVectors) {
  auto tok = LoadSentencePieceTokenizer((Fixtures() / "tok-llama2" / "tokenizer.model").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  ExpectVectors(**tok, "llama-spm", /*lossless=*/true);
  const SpecialTokens& s = (*tok)->special();
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_TRUE(s.add_bos);
  EXPECT_EQ((*tok)->VocabSize(), 32000);
}

TEST(Llama2SentencePieceTest, SameIdsAsTokenizerJsonOnShakespeare) {
  auto json_tok = LoadTokenizer((Fixtures() / "tok-llama2").string());
  auto sp_tok =
      LoadSentencePieceTokenizer((Fixtures() / "tok-llama2" / "tokenizer.model").string());
  ASSERT_TRUE(json_tok.ok() && sp_tok.ok());
  const std::string text = testing::ReadAll(Fixtures() / "data" / "tinyshakespeare.txt");
  // A few hundred lines, one example each.
  size_t pos = 0;
  for (int line = 0; line < 400 && pos < text.size(); ++line) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string s = text.substr(pos, end - pos);
    EXPECT_EQ((*json_tok)->Encode(s), (*sp_tok)->Encode(s)) << s;
    pos = end + 1;
  }
}

}  // namespace
}  // namespace peftd::data
