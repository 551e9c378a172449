// A small SentencePiece model file (the serialized ModelProto of sentencepiece_model.proto, written
// by hand so that no trainer is needed) for tiny test models whose tokenizer is SentencePiece
// (DeBERTa-v3's spm.model).
#ifndef PEFTD_WORKER_MODEL_TINY_SENTENCEPIECE_H_
#define PEFTD_WORKER_MODEL_TINY_SENTENCEPIECE_H_

#include <string>
#include <vector>

namespace peftd::model {

struct TinySentencePieceOptions {
  // Control pieces first, in id order; `unk` follows them as the UNKNOWN piece.
  std::vector<std::string> controls;
  std::string unk = "<unk>";
  // The trainer spec's names of BOS, EOS and pad (what SentencePiece's bos_id() etc. look up).
  std::string bos, eos, pad;
  // Control pieces placed after the normal ones (DeBERTa-v3's [MASK] sits last).
  std::vector<std::string> trailing_controls;
  int vocab_size = 512;  // every piece included
};

// A Unigram model with identity normalisation (add_dummy_prefix, whitespace as "▁", no byte
// fallback): after the control and unknown pieces, "▁", the printable ASCII characters, "▁" plus
// each letter, then lowercase letter pairs until vocab_size. Deterministic bytes.
std::string TinySentencePieceModel(const TinySentencePieceOptions& options);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_TINY_SENTENCEPIECE_H_
