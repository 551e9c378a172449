// The Linear modules of a LLaMA-family model, by their Hugging Face names, computed from its
// config.json alone (no LibTorch): what target_modules and exclude_modules select from. The
// worker builds exactly these modules (worker/model/llama.cc; tests/worker_model pins the two
// lists together), so the server can check patterns and estimate memory before a job runs.
#ifndef PEFTD_COMMON_MODEL_MODULES_H_
#define PEFTD_COMMON_MODEL_MODULES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/model_config.h"

namespace peftd::model {

// One projection: y = x·Wᵀ (+ b), W of shape (out_features, in_features).
struct LinearModule {
  std::string name;  // "model.layers.3.self_attn.q_proj"
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = false;
};

// In model order: per layer q, k, v, o, gate, up, down, then the head: `score` for a
// sequence-classification model, `lm_head` for a causal LM with untied embeddings, none when the
// embeddings are tied (the vocabulary projection then reuses embed_tokens, which is no Linear).
// GPT-2: per layer transformer.h.N.attn.c_attn (hidden -> 3·hidden, q, k and v fused),
// attn.c_proj, mlp.c_fc, mlp.c_proj, all with a bias. Their checkpoint weights are Conv1D,
// stored (in, out); the shapes here are those of the Linear the worker builds from them.
// RoBERTa: common/model_modules_encoders.h.
// T5: per encoder block encoder.block.N.layer.0.SelfAttention.{q,k,v,o} and
// layer.1.DenseReluDense.{wi | wi_0, wi_1; wo}, per decoder block decoder.block.N.layer.0.
// SelfAttention.{q,k,v,o}, layer.1.EncDecAttention.{q,k,v,o} and layer.2.DenseReluDense.*, then
// lm_head when untied (T5 v1.1, flan-t5); no bias.
std::vector<LinearModule> LinearModules(const ModelConfig& config);

// target_modules of a job that names none: PEFT's default mapping for the model type
// (q_proj, v_proj for the LLaMA family; c_attn for GPT-2; query, value for RoBERTa; q, v for T5).
std::vector<std::string> DefaultTargetModules(const ModelConfig& config);

// The task types ("CAUSAL_LM", "SEQ_CLS") a job on a checkpoint of this architecture (config.json
// architectures[0]) can have; empty for an architecture peftd does not load. `peftctl models list`
// shows them from the architecture the server lists.
std::vector<std::string> SupportedTaskTypes(const std::string& architecture);

// The config the worker builds its model from for a job: with num_labels > 0 (a SEQ_CLS job) the
// model gets a `score` head of num_labels classes whatever config.json says, as HF's
// AutoModelForSequenceClassification does for a causal-LM checkpoint.
ModelConfig ConfigForNumLabels(ModelConfig config, int64_t num_labels);

}  // namespace peftd::model

#endif  // PEFTD_COMMON_MODEL_MODULES_H_
