// The architecture part of a Hugging Face config.json for the LLaMA family (Llama 2/3, Mistral,
// Qwen2, TinyLlama, SmolLM) and GPT-2 (GPT2LMHeadModel, whose n_embd, n_layer, n_head, n_inner and
// n_positions land in the common fields) and T5 (T5ForConditionalGeneration, whose d_model, d_ff,
// num_layers, num_heads and d_kv land in hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads and head_dim). LibTorch-free, so the server can list and validate
// models too.
#ifndef PEFTD_COMMON_MODEL_CONFIG_H_
#define PEFTD_COMMON_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace peftd::model {

// rope_scaling {"rope_type": "llama3", ...} (Llama 3.1+).
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string model_type;    // "llama", "mistral", "qwen2", "gpt2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  // GPT-2: LayerNorm's eps (layer_norm_epsilon) and the MLP activation: "gelu_new" (the tanh
  // approximation, also spelt "gelu_pytorch_tanh") or "gelu" (exact erf).
  double layer_norm_epsilon = 1e-5;
  std::string activation_function = "gelu_new";
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> llama3_rope;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2: true, without o_proj bias)
  // HF's Llama gives o_proj the bias of attention_bias, and gate/up/down_proj that of mlp_bias
  // (transformers 4.41+); Mistral and Qwen2 have neither.
  bool o_proj_bias = false;
  bool mlp_bias = false;
  bool sequence_classification = false;  // *ForSequenceClassification
  int64_t num_labels = 2;
  std::vector<std::string> id2label;
  std::string torch_dtype;  // as written ("bfloat16", ...)
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;
  // RoBERTa (model_type "roberta", common/model_config_encoders.cc): token_type embeddings and
  // LayerNorm's eps (layer_norm_eps, in layer_norm_epsilon); hidden_act lands in
  // activation_function; pad_token_id is the embeddings' padding_idx, from which positions count.
  int64_t type_vocab_size = 0;
  // T5: the decoder's block count (num_decoder_layers, default num_layers; num_hidden_layers
  // counts the encoder's), the relative position buckets, whether the feed-forward is gated
  // (feed_forward_proj "gated-gelu": wi_0, wi_1; "relu": one wi) with activation_function its
  // act ("relu", "gelu_new", "gelu", "silu"), and the decoder's first input id. layer_norm_epsilon
  // is that of T5's RMS norm (no mean, no bias). The attention's width num_attention_heads·head_dim
  // need not equal hidden_size.
  int64_t num_decoder_layers = 0;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  bool gated_feed_forward = false;
  int64_t decoder_start_token_id = 0;
  // DeBERTa-v2/v3 (model_type "deberta-v2", common/model_config_deberta.cc): disentangled
  // attention over relative positions (relative_attention), log-bucketed into position_buckets
  // (<= 0: none) up to max_relative_positions (config's -1 resolved to max_position_embeddings);
  // the relative embeddings' LayerNorm (norm_rel_ebd "layer_norm"); the c2p and p2c terms of
  // pos_att_type; learned absolute positions added to the input only when position_biased_input;
  // ContextPooler's activation. type_vocab_size 0 means no token-type embeddings.
  bool relative_attention = false;
  int64_t max_relative_positions = 0;
  int64_t position_buckets = -1;
  bool norm_rel_ebd_layer_norm = false;
  bool pos_att_c2p = false, pos_att_p2c = false;
  bool position_biased_input = true;
  std::string pooler_hidden_act = "gelu";

  // Parameters of the base model (embeddings, layers, norm, head).
  int64_t NumParameters() const;
  // GPT-2 (model_type "gpt2"): learned positions, LayerNorm, fused c_attn Conv1D layers.
  bool IsGpt2() const { return model_type == "gpt2"; }
  // RoBERTa (model_type "roberta"): a post-LN encoder with a classifier head, SEQ_CLS only.
  bool IsRoberta() const { return model_type == "roberta"; }
  // T5 (model_type "t5"): an encoder-decoder with relative position bias; task SEQ_2_SEQ_LM.
  bool IsT5() const { return model_type == "t5"; }
  // DeBERTa-v2/v3 (model_type "deberta-v2"): a post-LN encoder with disentangled attention, a
  // ContextPooler and a classifier, SEQ_CLS only.
  bool IsDebertaV2() const { return model_type == "deberta-v2"; }
};

// Parses config.json text; InvalidArgument naming the field for unknown architectures, missing
// or inconsistent fields (heads not dividing hidden size, unsupported rope_scaling, ...).
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text);
absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& model_dir);
// config.json text for `config` (what make-tiny-model writes).
std::string ModelConfigJson(const ModelConfig& config);

}  // namespace peftd::model

#endif  // PEFTD_COMMON_MODEL_CONFIG_H_
