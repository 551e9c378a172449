// A deterministic, small RoBERTa Hugging Face folder (`peftd-worker make-tiny-model --arch
// roberta`) for tests and the demo: config.json (RobertaForSequenceClassification, 2 classes),
// model.safetensors with every weight, bias and LayerNorm parameter random (classifier included),
// and a byte-level BPE tokenizer.json with RoBERTa's conventions: <s> = 0, <pad> = 1, </s> = 2
// and the RobertaProcessing post-processor (<s> A </s>, <s> A </s></s> B </s>).
#ifndef PEFTD_WORKER_MODEL_TINY_ROBERTA_H_
#define PEFTD_WORKER_MODEL_TINY_ROBERTA_H_

#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace peftd::model {

// hidden 64, 2 layers, 4 heads, intermediate 128, vocab 512, max_position_embeddings 130
// (128 tokens after padding_idx 1), type_vocab_size 1, 2 labels.
ModelConfig TinyRobertaConfig();

// The tiny tokenizer.json (worker/model/tiny_model.h's merges) renumbered for RoBERTa's specials.
std::string TinyRobertaTokenizerJson(int64_t vocab_size);

// Writes the tiny RoBERTa into `dir` (created if needed); the same call writes the same bytes.
// `shards` > 1 writes an index and shards; `dtype` is "float32", "bfloat16" or "float16".
absl::Status WriteTinyRobertaModel(const std::string& dir, int shards = 1,
                                   const std::string& dtype = "float32");

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_TINY_ROBERTA_H_
