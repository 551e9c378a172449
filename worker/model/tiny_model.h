// A deterministic, few-MB LLaMA-shaped Hugging Face folder that tests and the demo train on:
// config.json, model.safetensors and a byte-level BPE tokenizer.json (+ tokenizer_config.json),
// in the real layouts so the same loading code runs as for a downloaded model.
#ifndef PEFTD_WORKER_MODEL_TINY_MODEL_H_
#define PEFTD_WORKER_MODEL_TINY_MODEL_H_

#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace peftd::model {

// hidden 64, 4 layers, 4 heads / 2 kv heads, intermediate 176, vocab 512, untied lm_head.
ModelConfig TinyConfig();
// About 100M parameters, LLaMA-shaped: hidden 768, 12 layers, 12 heads / 4 kv heads,
// intermediate 2048, vocab 32000 (for benchmarks; weights from llama.h's InitRandomWeights).
ModelConfig BenchConfig100M();

// Writes the tiny model into `dir` (created if needed). The same call always writes the same
// bytes. `shards` > 1 writes model-0000k-of-0000n.safetensors plus the index; `bf16` stores
// weights as BF16.
absl::Status WriteTinyModel(const std::string& dir, int shards = 1, bool bf16 = false);

// The byte-level BPE tokenizer.json of the tiny model: 256 byte tokens, merges learnt from a
// built-in English text up to `vocab_size` − 3, and the special tokens <|begin_of_text|>,
// <|end_of_text|>, <|pad|>.
std::string TinyTokenizerJson(int64_t vocab_size);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_TINY_MODEL_H_
