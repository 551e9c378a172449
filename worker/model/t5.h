// T5 (T5ForConditionalGeneration) in LibTorch, with Hugging Face module names so parameter names
// equal checkpoint keys and adapter keys match PEFT's: shared, encoder.block.N.layer.{0,1},
// decoder.block.N.layer.{0,1,2}, {encoder,decoder}.final_layer_norm, and lm_head only when the
// checkpoint unties it (T5 v1.1, flan-t5).
//
// What T5 is, as transformers' eager code computes it: an RMS-style LayerNorm (no mean, no bias),
// attention without the 1/sqrt(d) scale (T5 folds it into its initialisation), a relative
// position bias per head computed by the first block of each stack (bidirectional buckets in the
// encoder, causal ones in the decoder) and shared by the others, cross-attention without position
// bias, a feed-forward of one `wi` ("relu") or a gated pair `wi_0`, `wi_1` ("gated-gelu"), and a
// tied head that scales the decoder's output by d_model^-0.5. Dropout is not applied (the frozen
// base computes what transformers computes in eval mode, as for GPT-2).
#ifndef PEFTD_WORKER_MODEL_T5_H_
#define PEFTD_WORKER_MODEL_T5_H_

#include <torch/torch.h>

#include "adapters/linear.h"
#include "adapters/token_gate.h"
#include "common/model_config.h"

namespace peftd::model {

// T5LayerNorm: weight · x / sqrt(mean(x²) + eps).
class T5LayerNormImpl : public torch::nn::Module {
 public:
  T5LayerNormImpl(int64_t hidden, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(T5LayerNorm);

// transformers' T5Attention._relative_position_bucket: the bucket of each relative position
// (key − query), in the same float32 arithmetic so that bucket edges fall where HF's do.
torch::Tensor T5RelativePositionBucket(const torch::Tensor& relative_position, bool bidirectional,
                                       int64_t num_buckets, int64_t max_distance);

class T5AttentionImpl : public torch::nn::Module {
 public:
  T5AttentionImpl(const ModelConfig& config, bool has_relative_attention_bias, bool bidirectional);
  // x (B, Tq, d_model); kv (B, Tk, d_model), or undefined for self-attention; bias additive
  // (B or 1, H, Tq, Tk), the position bias with the mask folded in. `kv_mask` (B, Tk) is set as the
  // token gate's mask while k and v run, when `gate` is given (cross-attention reads the encoder).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& kv, const torch::Tensor& bias,
                        adapters::GateContext* gate = nullptr, const torch::Tensor& kv_mask = {});
  // (1, H, Tq, Tk) relative position bias (the first block of a stack only).
  torch::Tensor ComputeBias(int64_t query_length, int64_t key_length);

  adapters::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};

 private:
  int64_t heads_, head_dim_, num_buckets_, max_distance_;
  bool bidirectional_;
};
TORCH_MODULE(T5Attention);

// T5DenseActDense (wi, wo) or T5DenseGatedActDense (wi_0, wi_1, wo).
class T5DenseImpl : public torch::nn::Module {
 public:
  explicit T5DenseImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  adapters::Linear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(T5Dense);

// T5LayerSelfAttention (SelfAttention) and T5LayerCrossAttention (EncDecAttention): x +
// attn(ln(x)).
class T5LayerAttentionImpl : public torch::nn::Module {
 public:
  T5LayerAttentionImpl(const ModelConfig& config, bool cross, bool has_relative_attention_bias,
                       bool bidirectional);
  T5Attention attention{nullptr};  // registered as SelfAttention or EncDecAttention
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerAttention);

// T5LayerFF: x + DenseReluDense(ln(x)).
class T5LayerFFImpl : public torch::nn::Module {
 public:
  explicit T5LayerFFImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  T5Dense DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerFF);

// T5Block: a ModuleList `layer` of self-attention, cross-attention (the decoder's) and the
// feed-forward.
class T5BlockImpl : public torch::nn::Module {
 public:
  T5BlockImpl(const ModelConfig& config, bool is_decoder, bool first);
  torch::nn::ModuleList layer{nullptr};
};
TORCH_MODULE(T5Block);

// T5Stack: the encoder (is_decoder false) or the decoder; embeddings are T5's `shared`, held by
// the model, so the stack has no embed_tokens of its own.
class T5StackImpl : public torch::nn::Module {
 public:
  T5StackImpl(const ModelConfig& config, bool is_decoder);
  // x the embedded tokens (B, T, d_model); mask (B, T) 1 = real token (the decoder's own mask is
  // the causal one alone, as HF's without decoder_attention_mask). The decoder takes the
  // encoder's output and mask. `gate` (optional) gets each token mask before the modules that
  // read those tokens.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask,
                        const torch::Tensor& encoder_hidden = {},
                        const torch::Tensor& encoder_mask = {},
                        adapters::GateContext* gate = nullptr);
  torch::nn::ModuleList block{nullptr};
  T5LayerNorm final_layer_norm{nullptr};

 private:
  bool is_decoder_;
};
TORCH_MODULE(T5Stack);

class T5Impl : public torch::nn::Module {
 public:
  explicit T5Impl(const ModelConfig& config);
  // The encoder's output (B, Tenc, d_model).
  torch::Tensor Encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                       adapters::GateContext* gate = nullptr);
  // The decoder's final hidden states (B, Tdec, d_model), before the head's scale. The decoder
  // attends causally whatever `decoder_mask` says (HF's without decoder_attention_mask);
  // `decoder_mask` (B, Tdec), 1 where a target is real (undefined: all), is what the token gate
  // of decoder modules counts.
  torch::Tensor Decode(const torch::Tensor& decoder_input_ids, const torch::Tensor& encoder_hidden,
                       const torch::Tensor& encoder_mask, adapters::GateContext* gate = nullptr,
                       const torch::Tensor& decoder_mask = {});
  // Vocabulary logits of decoder states: lm_head, or `shared` with the d_model^-0.5 scale when
  // tied.
  torch::Tensor Head(const torch::Tensor& decoder_hidden);
  // What the head multiplies the decoder's states by before the projection (1 when untied).
  double HeadScale() const;
  // The vocabulary projection's weight (vocab, d_model): lm_head's, or shared's when tied.
  const torch::Tensor& HeadWeight() const;
  // labels (B, Tdec) with -100 = no loss -> decoder_input_ids: shifted right, starting with
  // decoder_start_token_id, -100 replaced by pad_token_id (HF's _shift_right).
  torch::Tensor ShiftRight(const torch::Tensor& labels) const;
  // Logits (B, Tdec, vocab) for `labels` as HF's forward(input_ids, attention_mask, labels).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& labels);

  const ModelConfig& config() const { return config_; }
  torch::nn::Embedding shared{nullptr};
  T5Stack encoder{nullptr}, decoder{nullptr};
  adapters::Linear lm_head{nullptr};  // null when tied

 private:
  ModelConfig config_;
};
TORCH_MODULE(T5);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_T5_H_
