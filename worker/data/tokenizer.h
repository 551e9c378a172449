// The tokenizer contract every dataset and the model use: text to ids and back, with the special
// tokens a model folder declares. Implementations: Hugging Face tokenizer.json (byte-level BPE as
// in GPT-2 / Llama 3 / Qwen2, Metaspace BPE with byte fallback as in Llama 2 / Mistral / TinyLlama)
// and SentencePiece tokenizer.model. LibTorch-free. Loaded tokenizers are immutable and
// thread-safe.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_H_
#define PEFTD_WORKER_DATA_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace peftd::data {

// The special tokens of a model, from tokenizer.json's added tokens and tokenizer_config.json
// (bos_token, eos_token, pad_token, add_bos_token, add_eos_token). -1 = the model has none.
struct SpecialTokens {
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  int64_t pad_id = -1;   // falls back to eos_id when the model declares no pad token
  bool add_bos = false;  // prepend BOS when encoding a whole sequence (Llama: true)
  bool add_eos = false;  // append EOS (rare)
  // A sequence pair's ids between A and B when the model's template says so (tokenizer.json's
  // RobertaProcessing: </s></s>, BertProcessing: [SEP]); A's own closing EOS is then not added
  // separately. Unset: A, its EOS when add_eos, then BOS again (or EOS when no EOS closed A).
  std::optional<std::vector<int64_t>> pair_middle;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Ids of `text` without BOS/EOS (HF `add_special_tokens=False`). Added and special tokens
  // written in the text (e.g. "<|im_start|>") are recognised as single ids. Never fails: bytes
  // that are not valid UTF-8 are encoded as bytes where the model can (byte-level, byte fallback).
  virtual std::vector<int64_t> Encode(std::string_view text) const = 0;
  // Text of `ids` (valid UTF-8; undecodable bytes become U+FFFD as in HF); special tokens are
  // dropped when `skip_special` is set, ids outside the vocabulary are skipped.
  virtual std::string Decode(const std::vector<int64_t>& ids, bool skip_special = false) const = 0;
  // Size of the id space (the largest id + 1, added tokens included).
  virtual int64_t VocabSize() const = 0;
  // The id of a token's exact string (e.g. "<|eot_id|>"), if the vocabulary has it.
  virtual std::optional<int64_t> TokenToId(std::string_view token) const = 0;
  virtual const SpecialTokens& special() const = 0;
};

// Loads the tokenizer of a Hugging Face model folder: tokenizer.json when present, else
// tokenizer.model, spiece.model or spm.model (SentencePiece; also when tokenizer.json is of a model
// type not read here, such as T5's Unigram); tokenizer_config.json, when present, sets the special
// tokens (bos/eos/pad_token as strings or {"content": ...}, add_bos_token, add_eos_token). Without
// it, or for flags it leaves out, tokenizer.json's post_processor decides (a TemplateProcessing
// that starts with a special token adds BOS). DeBERTa-v2/v3 (spm.model, or tokenizer_class
// DebertaV2Tokenizer[Fast]) gets DebertaV2Tokenizer's [CLS] A [SEP] / [CLS] A [SEP] B [SEP] with
// its cls_token, sep_token and pad_token. Errors name the file and the field that is wrong.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_H_
