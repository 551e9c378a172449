#include "worker/data/chat_template.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace peftd::data {
namespace {

// Appends `text`, merged into the last segment when that has the same trainability.
void Add(RenderedChat* out, std::string_view text, bool trainable) {
  if (text.empty()) return;
  if (!out->segments.empty() && out->segments.back().trainable == trainable) {
    out->segments.back().text.append(text.data(), text.size());
  } else {
    out->segments.push_back(ChatSegment{std::string(text), trainable});
  }
}

bool IsAssistant(const Message& m) { return m.role == "assistant"; }

// Jinja's `trim` (Python str.strip) on the ASCII whitespace a chat message can carry.
std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

// Qwen2 / OpenAI ChatML, as the Qwen2 tokenizer_config.json chat_template:
// '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n' per message.
class ChatMl : public ChatTemplate {
 public:
  std::string_view name() const override { return "chatml"; }
  RenderedChat Render(const std::vector<Message>& messages) const override {
    RenderedChat out;
    for (const Message& m : messages) {
      Add(&out, "<|im_start|>", false);
      Add(&out, m.role, false);
      Add(&out, "\n", false);
      const bool trainable = IsAssistant(m);
      Add(&out, m.content, trainable);
      Add(&out, "<|im_end|>", trainable);
      Add(&out, "\n", false);
    }
    return out;
  }
};

// Meta-Llama-3-Instruct: bos_token, then per message '<|start_header_id|>' + role +
// '<|end_header_id|>\n\n' + content | trim + '<|eot_id|>'.
class Llama3 : public ChatTemplate {
 public:
  std::string_view name() const override { return "llama3"; }
  RenderedChat Render(const std::vector<Message>& messages) const override {
    RenderedChat out;
    out.has_bos_text = true;
    Add(&out, "<|begin_of_text|>", false);
    for (const Message& m : messages) {
      Add(&out, "<|start_header_id|>", false);
      Add(&out, m.role, false);
      Add(&out, "<|end_header_id|>\n\n", false);
      const bool trainable = IsAssistant(m);
      Add(&out, Trim(m.content), trainable);
      Add(&out, "<|eot_id|>", trainable);
    }
    return out;
  }
};

// For models without chat tokens: "Role: content\n" lines, then EOS so generation stops.
class Plain : public ChatTemplate {
 public:
  std::string_view name() const override { return "plain"; }
  RenderedChat Render(const std::vector<Message>& messages) const override {
    RenderedChat out;
    for (const Message& m : messages) {
      const bool trainable = IsAssistant(m);
      // The space after "Assistant:" is trained with the answer: byte-level BPE encodes " word"
      // as one token, which the model has to produce.
      Add(&out, m.role == "system" ? "System: " : trainable ? "Assistant:" : "User: ", false);
      if (trainable) Add(&out, " ", true);
      Add(&out, m.content, trainable);
      Add(&out, "\n", trainable);
    }
    out.append_eos = true;
    out.eos_trainable = !messages.empty() && IsAssistant(messages.back());
    return out;
  }
};

const ChatTemplate* const kTemplates[] = {new ChatMl, new Llama3, new Plain};

}  // namespace

absl::StatusOr<const ChatTemplate*> FindChatTemplate(std::string_view name) {
  for (const ChatTemplate* t : kTemplates) {
    if (t->name() == name) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("chat_template: unknown template \"", std::string(name),
                   "\" (known: ", absl::StrJoin(ChatTemplateNames(), ", "), ")"));
}

std::vector<std::string> ChatTemplateNames() {
  std::vector<std::string> names;
  for (const ChatTemplate* t : kTemplates) names.emplace_back(t->name());
  return names;
}

std::string RenderChatText(const ChatTemplate& chat_template,
                           const std::vector<Message>& messages) {
  std::string text;
  for (const ChatSegment& s : chat_template.Render(messages).segments) text += s.text;
  return text;
}

}  // namespace peftd::data
