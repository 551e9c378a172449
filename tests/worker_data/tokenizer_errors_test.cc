// Refusals: unsupported tokenizer.json components and broken fields are errors that name the JSON
// path; LoadTokenizer names the file.
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/worker_data/tokenizer_fixtures.h"
#include "worker/data/tokenizer.h"
#include "worker/data/tokenizer_json.h"

namespace peftd::data {
namespace {

using nlohmann::json;

json Minimal() {
  return {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", json::array()}}}};
}

std::string Error(const json& j) {
  auto t = TokenizerFromJson(j.dump());
  EXPECT_FALSE(t.ok());
  return t.ok() ? "" : std::string(t.status().message());
}

TEST(TokenizerErrorsTest, NamesTheField) {
  json j = Minimal();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(Error(j).rfind("tokenizer.json: pre_tokenizer.type \"Whitespace\" is not supported", 0),
            0u)
      << Error(j);

  j = Minimal();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Digits"}}, {{"type", "Punctuation"}}}}};
  EXPECT_NE(Error(j).find("pre_tokenizer.pretokenizers[1].type \"Punctuation\""),
            std::string::npos);

  j = Minimal();
  j["normalizer"] = {{"type", "BertNormalizer"}};
  EXPECT_NE(Error(j).find("normalizer.type \"BertNormalizer\" is not supported"),
            std::string::npos);

  j = Minimal();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_NE(Error(j).find("decoder.type \"WordPiece\""), std::string::npos);

  j = Minimal();
  j["model"]["type"] = "Unigram";
  EXPECT_NE(Error(j).find("model.type \"Unigram\" is not supported"), std::string::npos);

  j = Minimal();
  j["model"]["merges"] = {"a b"};
  EXPECT_NE(Error(j).find("model.merges[0] uses \"ab\", which is not in model.vocab"),
            std::string::npos);

  j = Minimal();
  j["model"]["merges"] = {"ab"};
  EXPECT_NE(Error(j).find("model.merges[0]"), std::string::npos);

  j = Minimal();
  j["model"]["vocab"]["c"] = "x";
  EXPECT_NE(Error(j).find("model.vocab[\"c\"] must be an integer id"), std::string::npos);

  j = Minimal();
  j["model"]["byte_fallback"] = 1;
  EXPECT_NE(Error(j).find("model.byte_fallback must be true or false"), std::string::npos);

  j = Minimal();
  j["added_tokens"] = {{{"id", 5}, {"content", ""}}};
  EXPECT_NE(Error(j).find("added_tokens[0].content"), std::string::npos);

  j = Minimal();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "a(?=b)"}}}, {"behavior", "Isolated"}};
  EXPECT_NE(Error(j).find("pre_tokenizer.pattern"), std::string::npos);

  j = Minimal();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}}}}};
  EXPECT_NE(Error(j).find("after ByteLevel"), std::string::npos);

  j = Minimal();
  j["model"]["vocab"]["z"] = 1 << 30;
  EXPECT_NE(Error(j).find("ids must be dense"), std::string::npos);

  EXPECT_NE(std::string(TokenizerFromJson("{\"model\": ").status().message())
                .find("tokenizer.json: not valid JSON"),
            std::string::npos);
}

TEST(TokenizerErrorsTest, LoadTokenizerNamesFileAndField) {
  const auto dir = testing::TempDir("errors");
  auto missing = LoadTokenizer(dir.string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  testing::WriteAll(dir / "tokenizer.json", Minimal().dump());
  testing::WriteAll(dir / "tokenizer_config.json", R"({"eos_token": "</s>"})");
  auto bad = LoadTokenizer(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokenizer_config.json: eos_token \"</s>\""),
            std::string::npos)
      << bad.status();

  testing::WriteAll(
      dir / "tokenizer_config.json",
      R"({"eos_token": {"content": "b"}, "add_eos_token": true, "add_bos_token": "yes"})");
  bad = LoadTokenizer(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("add_bos_token must be true or false"), std::string::npos);

  testing::WriteAll(dir / "tokenizer_config.json",
                    R"({"eos_token": {"content": "b"}, "add_eos_token": true, "bos_token": "a"})");
  auto ok = LoadTokenizer(dir.string());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->special().eos_id, 1);
  EXPECT_EQ((*ok)->special().pad_id, 1);  // pad falls back to eos
  EXPECT_EQ((*ok)->special().bos_id, 0);
  EXPECT_FALSE((*ok)->special().add_bos);
  EXPECT_TRUE((*ok)->special().add_eos);

  testing::WriteAll(dir / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  bad = LoadTokenizer(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir.string()), std::string::npos);
  EXPECT_NE(bad.status().message().find("model.type \"WordPiece\""), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace peftd::data
