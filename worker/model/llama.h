// The LLaMA family (Llama 2/3, Mistral, Qwen2, TinyLlama, SmolLM) in LibTorch, with Hugging Face
// module names so parameter names equal checkpoint keys and adapter keys match PEFT:
// model.embed_tokens, model.layers.N.self_attn.{q,k,v,o}_proj,
// model.layers.N.mlp.{gate,up,down}_proj, model.layers.N.{input,post_attention}_layernorm,
// model.norm, lm_head (causal LM) or score (sequence classification). Every projection is an
// adapters::Linear so adapters can attach.
#ifndef PEFTD_WORKER_MODEL_LLAMA_H_
#define PEFTD_WORKER_MODEL_LLAMA_H_

#include <torch/torch.h>

#include "adapters/linear.h"
#include "common/model_config.h"
#include "worker/model/fused_projection.h"

namespace peftd::model {

// RoPE inverse frequencies (head_dim / 2), HF's default or llama3-scaled computation, float32.
torch::Tensor RopeInverseFrequencies(const ModelConfig& config);

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t hidden, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& config);
  // x (B, T, hidden); cos/sin (B, T, head_dim); mask additive (B, T, T), causal. With
  // `every_row_sees_a_key` (no sequence starts with padding) attention skips the blocks above
  // the diagonal (AttentionCore's causal schedule).
  // `first_key` (B, T): where each query's record starts, for a packed batch, and the right
  // padding marked (AttentionCore, MarkRightPadding).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, bool every_row_sees_a_key = false,
                        const torch::Tensor& first_key = {});
  adapters::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  // q, k and v as one GEMM (their weights are views of one buffer).
  FusedProjection qkv;

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  adapters::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  // gate and up as one GEMM.
  FusedProjection gate_up;
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, bool every_row_sees_a_key = false,
                        const torch::Tensor& first_key = {});
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// The decoder stack ("model." in HF names).
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const ModelConfig& config);
  // input_ids (B, T) int64; attention_mask (B, T) with 1 for real tokens (undefined = all real).
  // A packed batch also gives position_ids and sequence_ids (B, T) (train::Batch): positions
  // restart at every record and attention is block-diagonal causal, so a record sees only itself.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& position_ids = {},
                        const torch::Tensor& sequence_ids = {});
  // On by default; off runs every projection on its own (the reference of the tests).
  void SetFusedProjections(bool enabled);

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};

 private:
  ModelConfig config_;
  torch::Tensor inv_freq_;
};
TORCH_MODULE(LlamaModel);

// The decoder plus its head: lm_head (causal LM; absent when tied to embed_tokens) or score.
class LlamaImpl : public torch::nn::Module {
 public:
  explicit LlamaImpl(const ModelConfig& config);

  // Final hidden states (B, T, hidden).
  torch::Tensor Hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                       const torch::Tensor& position_ids = {},
                       const torch::Tensor& sequence_ids = {});
  // Vocabulary logits (causal LM) or class logits (classification) of hidden states (..., hidden).
  torch::Tensor Head(const torch::Tensor& hidden);
  // Logits of every position: (B, T, vocab), or (B, num_labels) of the last real token.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);

  const ModelConfig& config() const { return config_; }
  LlamaModel model{nullptr};
  adapters::Linear lm_head{nullptr};  // null when tied or for classification
  adapters::Linear score{nullptr};    // classification only; trainable

 private:
  ModelConfig config_;
};
TORCH_MODULE(Llama);

// Index of the last real token of every sequence (B), from the attention mask (right or left
// padding).
torch::Tensor LastTokenIndex(const torch::Tensor& attention_mask);

// The tiny model's weights, for any config: every parameter but the norms N(0, 0.02) from a
// generator seeded with `seed`, the norms left at 1. A Llama built from a config alone has zero
// projections (its weights come from a checkpoint), so a benchmark that builds one must call this
// or it trains a model whose logits are all equal and whose adapters get zero gradients.
void InitRandomWeights(Llama& model, uint64_t seed = 1234);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_LLAMA_H_
