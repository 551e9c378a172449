// Chat templates: how a `messages` record becomes text, as the Hugging Face chat templates of
// the model families render it (apply_chat_template, add_generation_prompt=False), cut into
// segments that say which text carries the loss: an assistant turn's content and its end marker
// (what the model must learn to produce, stop included), nothing else.
//
//   chatml  <|im_start|>{role}\n{content}<|im_end|>\n          (Qwen2 base / OpenAI ChatML; no
//           default system prompt: Qwen2-Instruct's template adds "You are a helpful assistant."
//           when the first message is not a system one; write that system message to match it)
//   llama3  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{trimmed
//   content}<|eot_id|>
//           (Meta-Llama-3-Instruct: content is stripped of surrounding whitespace, as its `| trim`)
//   plain   "System: {content}\n", "User: {content}\n", "Assistant: {content}\n", then EOS
//           (for models without chat tokens, e.g. the built-in tiny model)
//
// Trainable: chatml "{content}<|im_end|>" (not the "\n" after it), llama3 "{content}<|eot_id|>",
// plain " {content}\n" (the space after "Assistant:" included) and the final EOS when the last
// turn is the assistant's. Segments are cut where tokenizers split anyway (at special tokens, after
// a newline, before a space), so encoding them one by one usually gives the whole string's ids.
#ifndef PEFTD_WORKER_DATA_CHAT_TEMPLATE_H_
#define PEFTD_WORKER_DATA_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dataset_records.h"

namespace peftd::data {

struct ChatSegment {
  std::string text;
  bool trainable = false;  // the loss is computed on these tokens
};

struct RenderedChat {
  std::vector<ChatSegment> segments;
  // The template writes its own BOS text (llama3's "<|begin_of_text|>"): the caller must not
  // prepend the tokenizer's BOS id again.
  bool has_bos_text = false;
  // The template ends with the tokenizer's EOS id (plain), trainable when `eos_trainable`.
  bool append_eos = false;
  bool eos_trainable = false;
};

class ChatTemplate {
 public:
  virtual ~ChatTemplate() = default;
  virtual std::string_view name() const = 0;
  // Renders validated messages (roles system/user/assistant). Adjacent segments of the same
  // trainability may be merged; concatenating every segment's text gives the template's string.
  virtual RenderedChat Render(const std::vector<Message>& messages) const = 0;
};

// The template named `name`; INVALID_ARGUMENT listing the known names otherwise
// ("chat_template: unknown template \"zephyr\" (known: chatml, llama3, plain)").
absl::StatusOr<const ChatTemplate*> FindChatTemplate(std::string_view name);
// "chatml", "llama3", "plain".
std::vector<std::string> ChatTemplateNames();

// The whole rendered string (segments concatenated, without BOS/EOS ids): for logs and tests.
std::string RenderChatText(const ChatTemplate& chat_template, const std::vector<Message>& messages);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_CHAT_TEMPLATE_H_
