// The gradient bytes one data-parallel step sums over the ranks for LoRA r=8 on q_proj and
// v_proj, from the Linear modules the worker builds for a config (common/model_modules.h, pinned
// to worker/model by tests) and LoRA's r·(in + out) trainable elements per module (METHODS.md),
// in fp32. docs/performance.md's estimate for N machines starts from these; bench_train
// --data-parallel prints them and checks the ~100M figure against the flat gradient buffer its
// ranks actually sum.
#ifndef PEFTD_BENCH_TRAIN_ALLREDUCE_BYTES_H_
#define PEFTD_BENCH_TRAIN_ALLREDUCE_BYTES_H_

#include <cstdint>
#include <string>

#include "common/model_config.h"
#include "common/model_modules.h"

namespace peftd::bench {

inline int64_t LoraQvGradientBytes(const model::ModelConfig& config, int64_t r = 8) {
  int64_t elements = 0;
  for (const auto& m : model::LinearModules(config)) {
    const std::string leaf = m.name.substr(m.name.rfind('.') + 1);
    if (leaf == "q_proj" || leaf == "v_proj") elements += r * (m.in_features + m.out_features);
  }
  return elements * 4;
}

// Hugging Face config.json of meta-llama/Llama-2-7b-hf and meta-llama/Meta-Llama-3-8B, the fields
// the module list reads.
inline model::ModelConfig Llama2_7BConfig() {
  model::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 128;
  return c;
}

inline model::ModelConfig Llama3_8BConfig() {
  model::ModelConfig c = Llama2_7BConfig();
  c.vocab_size = 128256;
  c.intermediate_size = 14336;
  c.num_key_value_heads = 8;
  return c;
}

}  // namespace peftd::bench

#endif  // PEFTD_BENCH_TRAIN_ALLREDUCE_BYTES_H_
