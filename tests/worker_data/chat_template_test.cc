// Chat templates: the exact strings the Hugging Face templates render, which text is trainable,
// and the refusal of unknown names.
#include "worker/data/chat_template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace peftd::data {
namespace {

const std::vector<Message> kChat = {
    {"system", "Be brief."}, {"user", "Hi"},     {"assistant", "Hello!"},
    {"user", "2+2?"},        {"assistant", "4"},
};

const ChatTemplate& Get(const char* name) {
  auto t = FindChatTemplate(name);
  EXPECT_TRUE(t.ok()) << t.status();
  return **t;
}

std::string Trainable(const RenderedChat& chat) {
  std::string out;
  for (const auto& s : chat.segments) {
    if (s.trainable) out += "[" + s.text + "]";
  }
  return out;
}

TEST(ChatTemplate, ChatMlRendersAsQwen2) {
  const ChatTemplate& t = Get("chatml");
  EXPECT_EQ(RenderChatText(t, kChat),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n");
  const RenderedChat chat = t.Render(kChat);
  EXPECT_EQ(Trainable(chat), "[Hello!<|im_end|>][4<|im_end|>]");
  EXPECT_FALSE(chat.has_bos_text);
  EXPECT_FALSE(chat.append_eos);
  // Segments alternate: merging leaves no two neighbours of the same kind.
  for (size_t i = 1; i < chat.segments.size(); ++i) {
    EXPECT_NE(chat.segments[i].trainable, chat.segments[i - 1].trainable);
  }
}

TEST(ChatTemplate, ChatMlMatchesTheQwen2TokenizerConfig) {
  // PEFTD_FIXTURES (environment) overrides the build's path, for checkouts not beside shared/.
  const char* env = std::getenv("PEFTD_FIXTURES");
  const std::string dir = env != nullptr && *env != 0 ? env : PEFTD_FIXTURES_DIR;
  std::ifstream in(dir + "/tok-qwen2/tokenizer_config.json");
  ASSERT_TRUE(in) << "fixture missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string jinja = nlohmann::json::parse(ss.str())["chat_template"];
  // The per-message expression our chatml reproduces, and nothing else emitted per message.
  EXPECT_THAT(jinja, ::testing::HasSubstr("{% for message in messages %}{{'<|im_start|>' + "
                                          "message['role'] + '\n' + message['content'] + "
                                          "'<|im_end|>' + '\n'}}{% endfor %}"));
}

TEST(ChatTemplate, Llama3RendersAsMetaLlama3Instruct) {
  const ChatTemplate& t = Get("llama3");
  std::vector<Message> chat = kChat;
  chat[2].content = "  Hello!\n";  // the template trims content
  EXPECT_EQ(RenderChatText(t, chat),
            "<|begin_of_text|>"
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
  const RenderedChat r = t.Render(chat);
  EXPECT_EQ(Trainable(r), "[Hello!<|eot_id|>][4<|eot_id|>]");
  EXPECT_TRUE(r.has_bos_text);
  EXPECT_FALSE(r.append_eos);
}

TEST(ChatTemplate, PlainUsesRoleNamesAndEndsWithEos) {
  const ChatTemplate& t = Get("plain");
  EXPECT_EQ(RenderChatText(t, kChat),
            "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: 2+2?\nAssistant: 4\n");
  RenderedChat r = t.Render(kChat);
  EXPECT_EQ(Trainable(r), "[ Hello!\n][ 4\n]");
  EXPECT_TRUE(r.append_eos);
  EXPECT_TRUE(r.eos_trainable);
  // A conversation that ends with the user: the EOS after it is not the model's to learn.
  r = t.Render({{"assistant", "Hi, ask me."}, {"user", "ok"}});
  EXPECT_TRUE(r.append_eos);
  EXPECT_FALSE(r.eos_trainable);
}

TEST(ChatTemplate, UnknownNamesAreRefusedListingTheKnownOnes) {
  auto t = FindChatTemplate("zephyr");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(),
            "chat_template: unknown template \"zephyr\" (known: chatml, llama3, plain)");
  EXPECT_EQ(ChatTemplateNames(), (std::vector<std::string>{"chatml", "llama3", "plain"}));
  for (const auto& name : ChatTemplateNames()) EXPECT_EQ(Get(name.c_str()).name(), name);
}

}  // namespace
}  // namespace peftd::data
