// A deterministic, small GPT-2 Hugging Face folder (`peftd-worker make-tiny-model --arch gpt2`)
// for tests and the demo: config.json (GPT2LMHeadModel), model.safetensors with Conv1D weights
// stored (in, out) as transformers saves them and no lm_head.weight (tied), and the tiny byte-level
// BPE tokenizer (worker/model/tiny_model.h) with GPT-2's conventions: no BOS added, no pad token,
// one end-of-text token for both BOS and EOS.
#ifndef PEFTD_WORKER_MODEL_TINY_GPT2_H_
#define PEFTD_WORKER_MODEL_TINY_GPT2_H_

#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace peftd::model {

// n_embd 64, n_layer 2, n_head 4, n_inner 256, n_positions 256, vocab 512, tied head.
ModelConfig TinyGpt2Config();

// Writes the tiny GPT-2 into `dir` (created if needed); the same call writes the same bytes.
// Every weight, bias and LayerNorm parameter is random (LayerNorm weights around 1), so a
// fidelity test exercises all of them. `shards` > 1 writes an index and shards; `dtype` is
// "float32", "bfloat16" or "float16".
absl::Status WriteTinyGpt2Model(const std::string& dir, int shards = 1,
                                const std::string& dtype = "float32");

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_TINY_GPT2_H_
