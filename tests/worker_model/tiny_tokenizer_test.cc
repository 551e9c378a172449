// The tiny model's tokenizer.json (TinyTokenizerJson, byte-level BPE with "a b" merges and three
// specials) loads through LoadTokenizer and round-trips text, with the specials of its
// tokenizer_config.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "worker/data/tokenizer.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;

TEST(TinyTokenizerTest, LoadsAndRoundTrips) {
  const fs::path dir = fs::temp_directory_path() / ("peftd_tiny_tok_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(WriteTinyModel(dir.string()).ok());
  auto tok = data::LoadTokenizer(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto& t = **tok;
  EXPECT_EQ(t.VocabSize(), TinyConfig().vocab_size);
  const data::SpecialTokens& s = t.special();
  EXPECT_EQ(s.bos_id, t.TokenToId("<|begin_of_text|>").value_or(-2));
  EXPECT_EQ(s.eos_id, t.TokenToId("<|end_of_text|>").value_or(-2));
  EXPECT_EQ(s.pad_id, t.TokenToId("<|pad|>").value_or(-2));
  EXPECT_EQ(s.bos_id, TinyConfig().vocab_size - 3);
  EXPECT_TRUE(s.add_bos);
  EXPECT_FALSE(s.add_eos);
  for (const std::string text : {"the quick brown fox", "  two  spaces\nand a newline\n",
                                 "bytes: \xC3\xA9\xE2\x82\xAC \xF0\x9F\x98\x81", ""}) {
    const auto ids = t.Encode(text);
    EXPECT_EQ(t.Decode(ids), text);
    for (int64_t id : ids) EXPECT_LT(id, s.bos_id);  // plain text never yields a special
  }
  // Merges were learnt from English text: common words take fewer ids than bytes.
  EXPECT_LT(t.Encode(" the the the the").size(), std::string(" the the the the").size());
  const auto ids = t.Encode("<|begin_of_text|>hi<|end_of_text|>");
  EXPECT_EQ(ids.front(), s.bos_id);
  EXPECT_EQ(ids.back(), s.eos_id);
  EXPECT_EQ(t.Decode(ids, /*skip_special=*/true), "hi");
  fs::remove_all(dir);
}

// libsentencepiece bundles protobuf-lite and clashes with LibTorch's libprotobuf when linked into
// the same process; it is dlopen'ed in isolation instead (worker/data/sentencepiece_raw.h). This
// test runs in a LibTorch process, so it would crash without that.
TEST(TinyTokenizerTest, SentencePieceLoadsInALibTorchProcess) {
  const char* env = std::getenv("PEFTD_FIXTURES");
  const fs::path model = fs::path(env != nullptr && *env ? env : PEFTD_FIXTURES_DIR) /
                         "tok-llama2" / "tokenizer.model";
  const fs::path dir = fs::temp_directory_path() / ("peftd_tiny_sp_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(model, dir / "tokenizer.model");
  auto tok = data::LoadTokenizer(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("Hello world"), (std::vector<int64_t>{15043, 3186}));
  EXPECT_EQ((*tok)->Decode({15043, 3186}), "Hello world");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd::model
