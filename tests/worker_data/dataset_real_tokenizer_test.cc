// Datasets over the real tokenizers of the fixtures (Qwen2, Llama 3, Llama 2): chat markers are
// single special ids, BOS comes once, and a record's ids are exactly those of its whole rendered
// string (what HF apply_chat_template(tokenize=True) gives), whether the tokenizer splits at the
// segment boundaries (byte-level BPE) or not (SentencePiece word-start marks).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/worker_data/tokenizer_fixtures.h"
#include "worker/data/dataset.h"

namespace peftd::data {
namespace {

using testing::Fixtures;
using testing::ReadAll;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kNo = -100;

std::unique_ptr<Tokenizer> Load(const fs::path& dir) {
  auto t = LoadTokenizer(dir.string());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

// Self-Instruct tasks as conversations (with and without a system turn, two turns for some).
std::vector<std::vector<Message>> Conversations() {
  std::vector<std::vector<Message>> out;
  std::istringstream in(ReadAll(Fixtures() / "data" / "self-instruct-seed_tasks.jsonl"));
  int i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    const json task = json::parse(line);
    std::vector<Message> chat;
    if (i % 2 == 0) chat.push_back({"system", "You are a helpful assistant."});
    for (const json& inst : task["instances"]) {
      std::string user = task["instruction"];
      if (!inst["input"].get<std::string>().empty())
        user += "\n\n" + inst["input"].get<std::string>();
      chat.push_back({"user", user});
      chat.push_back({"assistant", inst["output"]});
    }
    out.push_back(std::move(chat));
  }
  return out;
}

std::string AsJsonl(const std::vector<std::vector<Message>>& chats) {
  std::string out;
  for (const auto& chat : chats) {
    json messages = json::array();
    for (const auto& m : chat) messages.push_back({{"role", m.role}, {"content", m.content}});
    out += json{{"messages", messages}}.dump() + "\n";
  }
  return out;
}

// The ids are the whole rendered string's; labels copy them on trained tokens; `end_marker`
// (when >= 0) is trained once per assistant turn.
void CheckChat(const Tokenizer& tokenizer, const std::string& template_name, int64_t end_marker) {
  const auto chats = Conversations();
  DatasetOptions options;
  options.chat_template = template_name;
  options.max_seq_len = 100000;
  auto d = LoadDatasetFromBytes(AsJsonl(chats), "chat.jsonl", tokenizer, options);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->examples.size(), chats.size());
  const ChatTemplate& tmpl = **FindChatTemplate(template_name);
  const SpecialTokens& special = tokenizer.special();
  for (size_t i = 0; i < chats.size(); ++i) {
    SCOPED_TRACE(i);
    const Example& e = d->examples[i];
    std::vector<int64_t> whole;
    const RenderedChat rendered = tmpl.Render(chats[i]);
    if (special.add_bos && !rendered.has_bos_text) whole.push_back(special.bos_id);
    const std::vector<int64_t> text = tokenizer.Encode(RenderChatText(tmpl, chats[i]));
    whole.insert(whole.end(), text.begin(), text.end());
    if (rendered.append_eos) whole.push_back(special.eos_id);
    ASSERT_EQ(e.input_ids, whole);
    std::vector<int64_t> trained;
    int markers = 0;
    for (size_t t = 0; t < e.labels.size(); ++t) {
      if (e.labels[t] == kNo) continue;
      ASSERT_EQ(e.labels[t], e.input_ids[t]);
      trained.push_back(e.labels[t]);
      markers += e.labels[t] == end_marker;
    }
    int assistants = 0;
    for (const auto& m : chats[i]) assistants += m.role == "assistant";
    EXPECT_GT(trained.size(), 0u);
    if (end_marker >= 0) EXPECT_EQ(markers, assistants);
  }
}

TEST(DatasetRealTokenizer, Qwen2ChatMlMarkersAreSpecialIdsAndIdsAreTheWholeStrings) {
  auto tokenizer = Load(testing::AssembleQwen2(testing::TempDir("ds_qwen2")));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Encode("<|im_start|>user\nhi<|im_end|>").front(), 151644);
  CheckChat(*tokenizer, "chatml", /*<|im_end|>*/ 151645);
}

TEST(DatasetRealTokenizer, Llama3TemplateHasOneBosAndIdsAreTheWholeStrings) {
  auto tokenizer = Load(testing::AssembleLlama3(testing::TempDir("ds_llama3")));
  ASSERT_NE(tokenizer, nullptr);
  ASSERT_TRUE(tokenizer->special().add_bos);
  CheckChat(*tokenizer, "llama3", /*<|eot_id|>*/ 128009);
  DatasetOptions options;
  options.chat_template = "llama3";
  auto d = LoadDatasetFromBytes(
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})",
      "chat.jsonl", *tokenizer, options);
  ASSERT_TRUE(d.ok()) << d.status();
  const auto& ids = d->examples[0].input_ids;
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128000), 1);
}

TEST(DatasetRealTokenizer, PlainAndSentencePieceChatsUseTheWholeStringIds) {
  auto qwen2 = Load(testing::AssembleQwen2(testing::TempDir("ds_qwen2_plain")));
  ASSERT_NE(qwen2, nullptr);
  CheckChat(*qwen2, "plain", -1);
  // Llama 2 (Metaspace BPE) puts a word-start mark on every piece it encodes: encoding segments
  // alone would differ from the whole string; the boundaries come from the prefixes instead.
  auto llama2 = Load(Fixtures() / "tok-llama2");
  ASSERT_NE(llama2, nullptr);
  CheckChat(*llama2, "chatml", -1);
  CheckChat(*llama2, "plain", -1);
}

TEST(DatasetRealTokenizer, Llama2PromptCompletionIsTheWholeStringWithThePromptMasked) {
  auto tokenizer = Load(Fixtures() / "tok-llama2");
  ASSERT_NE(tokenizer, nullptr);
  const SpecialTokens& special = tokenizer->special();
  ASSERT_TRUE(special.add_bos);
  auto d = LoadDatasetFromBytes(R"({"prompt": "Question: 2+2?\nAnswer:", "completion": " 4"})",
                                "pc.jsonl", *tokenizer, {});
  ASSERT_TRUE(d.ok()) << d.status();
  const Example& e = d->examples[0];
  const auto prompt = tokenizer->Encode("Question: 2+2?\nAnswer:");
  const auto whole = tokenizer->Encode("Question: 2+2?\nAnswer: 4");
  std::vector<int64_t> want = {special.bos_id};
  want.insert(want.end(), whole.begin(), whole.end());
  want.push_back(special.eos_id);
  EXPECT_EQ(e.input_ids, want);
  size_t common = 0;
  while (common < prompt.size() && prompt[common] == whole[common]) ++common;
  EXPECT_EQ(std::count(e.labels.begin(), e.labels.end(), kNo), static_cast<int64_t>(1 + common));
  EXPECT_EQ(e.labels.back(), special.eos_id);
}

}  // namespace
}  // namespace peftd::data
