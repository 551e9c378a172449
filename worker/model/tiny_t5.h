// A deterministic, small T5 Hugging Face folder (`peftd-worker make-tiny-model --arch t5`) for
// tests and the demo: config.json (T5ForConditionalGeneration), model.safetensors, and the tiny
// byte-level BPE tokenizer (worker/model/tiny_model.h) with T5's conventions: no BOS, EOS appended
// to inputs and targets, the pad token also the decoder's start token.
#ifndef PEFTD_WORKER_MODEL_TINY_T5_H_
#define PEFTD_WORKER_MODEL_TINY_T5_H_

#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace peftd::model {

// d_model 64, d_kv 8 with 4 heads (the attention is 32 wide, unlike d_model, as T5 allows),
// d_ff 128, 2 encoder and 3 decoder blocks, 8 relative-position buckets up to distance 20 (so a
// sequence of a dozen tokens reaches the logarithmic buckets), vocabulary 512.
// `v1_0` false: T5 v1.1 / flan-t5 (gated-gelu, untied lm_head); true: T5 v1.0 (relu, tied head).
ModelConfig TinyT5Config(bool v1_0 = false);

// Writes the tiny T5 into `dir` (created if needed); the same call writes the same bytes. Every
// weight and norm is random (norm weights around 1), so a fidelity test exercises all of them.
// `shards` > 1 writes an index and shards; `dtype` is "float32", "bfloat16" or "float16".
absl::Status WriteTinyT5Model(const std::string& dir, int shards = 1,
                              const std::string& dtype = "float32", bool v1_0 = false);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_TINY_T5_H_
