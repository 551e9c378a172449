// The SentencePiece tokenizer.model tokenizer (Llama 1/2, Mistral, T5), through libsentencepiece.
// Control and unknown pieces written in the text ("<s>", "</s>", "<unk>") are recognised as single
// ids, as Hugging Face's slow tokenizers split their special tokens out before SentencePiece.
#ifndef PEFTD_WORKER_DATA_SENTENCEPIECE_TOKENIZER_H_
#define PEFTD_WORKER_DATA_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/data/tokenizer_base.h"

namespace peftd::data {

// special() starts from the model's own ids: bos/eos/pad as the model declares them, add_bos when
// it has a BOS piece, else add_eos when it has an EOS piece (T5).
absl::StatusOr<std::unique_ptr<TokenizerBase>> LoadSentencePieceTokenizer(const std::string& path);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_SENTENCEPIECE_TOKENIZER_H_
