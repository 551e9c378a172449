// A deterministic, small DeBERTa-v3 Hugging Face folder (`peftd-worker make-tiny-model --arch
// deberta-v2`) for tests and the demo: config.json (DebertaV2ForSequenceClassification, 2 classes,
// DeBERTa-v3's attention options), model.safetensors with every weight, bias and LayerNorm
// parameter random (pooler and classifier included), and a SentencePiece spm.model with
// DeBERTa-v3's conventions: [PAD] = 0, [CLS] = 1, [SEP] = 2, [UNK] = 3, [MASK] last, and
// tokenizer_config.json naming DebertaV2Tokenizer ([CLS] A [SEP], [CLS] A [SEP] B [SEP]).
#ifndef PEFTD_WORKER_MODEL_TINY_DEBERTA_V2_H_
#define PEFTD_WORKER_MODEL_TINY_DEBERTA_V2_H_

#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace peftd::model {

// hidden 64, 2 layers, 4 heads, intermediate 128, vocab 512, max_position_embeddings 128 (so
// max_relative_positions −1 means 128), 8 position buckets (a dozen tokens reach the logarithmic
// ones), relative attention with p2c and c2p, the relative embeddings' LayerNorm, no absolute
// positions, no token types, 2 labels.
ModelConfig TinyDebertaV2Config();

// Writes the tiny DeBERTa-v3 into `dir` (created if needed); the same call writes the same bytes.
// `shards` > 1 writes an index and shards; `dtype` is "float32", "bfloat16" or "float16".
// `config` (a variant of TinyDebertaV2Config: other attention options, absolute positions, token
// types, pooler activation) lets tests cover DeBERTa-v2's options.
absl::Status WriteTinyDebertaV2Model(const std::string& dir, int shards = 1,
                                     const std::string& dtype = "float32",
                                     const ModelConfig& config = TinyDebertaV2Config());

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_TINY_DEBERTA_V2_H_
