// GPT-2 (GPT2LMHeadModel) in LibTorch, with Hugging Face module names so parameter names equal
// checkpoint keys and adapter keys match PEFT's: transformer.{wte,wpe,ln_f},
// transformer.h.N.{ln_1,ln_2}, transformer.h.N.attn.{c_attn,c_proj}, transformer.h.N.mlp.{c_fc,
// c_proj}, and lm_head only when the checkpoint unties it.
//
// HF's Conv1D computes x·W + b with W stored (in, out); here every Conv1D is an adapters::Linear
// holding Wᵀ (out, in), filled transposed by LoadGpt2Weights. Adapters then see the usual Linear
// orientation, which is also what PEFT does for GPT-2: with fan_in_fan_out it keeps lora_A (r, in)
// and lora_B (out, r) and transposes only the delta it adds to the Conv1D weight.
//
// The base model's dropouts (embd_pdrop, attn_pdrop, resid_pdrop) are not applied, in training
// either: the frozen base computes what HF's model computes in eval mode (as the LLaMA path, whose
// checkpoints have no dropout).
#ifndef PEFTD_WORKER_MODEL_GPT2_H_
#define PEFTD_WORKER_MODEL_GPT2_H_

#include <torch/torch.h>

#include "adapters/linear.h"
#include "common/model_config.h"

namespace peftd::model {

class Gpt2AttentionImpl : public torch::nn::Module {
 public:
  explicit Gpt2AttentionImpl(const ModelConfig& config);
  // x (B, T, hidden); mask additive (B, T, T); `causal` and `first_key` as AttentionCore's.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, bool causal,
                        const torch::Tensor& first_key);
  adapters::Linear c_attn{nullptr}, c_proj{nullptr};  // c_attn: q, k, v fused (hidden -> 3·hidden)

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(Gpt2Attention);

class Gpt2MlpImpl : public torch::nn::Module {
 public:
  explicit Gpt2MlpImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  adapters::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  bool tanh_gelu_;  // gelu_new (tanh approximation) or the exact erf GELU
};
TORCH_MODULE(Gpt2Mlp);

// Pre-LN: x + attn(ln_1(x)), then h + mlp(ln_2(h)).
class Gpt2BlockImpl : public torch::nn::Module {
 public:
  explicit Gpt2BlockImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, bool causal,
                        const torch::Tensor& first_key);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Gpt2Attention attn{nullptr};
  Gpt2Mlp mlp{nullptr};
};
TORCH_MODULE(Gpt2Block);

// GPT2Model ("transformer." in HF names).
class Gpt2ModelImpl : public torch::nn::Module {
 public:
  explicit Gpt2ModelImpl(const ModelConfig& config);
  // As LlamaModelImpl::forward: attention_mask (B, T) (undefined = all real); a packed batch
  // gives position_ids and sequence_ids, so positions restart per record and attention is
  // block-diagonal causal.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& position_ids = {},
                        const torch::Tensor& sequence_ids = {});
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};

 private:
  int64_t max_positions_;
};
TORCH_MODULE(Gpt2Model);

class Gpt2Impl : public torch::nn::Module {
 public:
  explicit Gpt2Impl(const ModelConfig& config);
  // Final hidden states (B, T, hidden) (after ln_f).
  torch::Tensor Hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                       const torch::Tensor& position_ids = {},
                       const torch::Tensor& sequence_ids = {});
  // Vocabulary logits of hidden states (..., hidden): through wte (tied) or lm_head.
  torch::Tensor Head(const torch::Tensor& hidden);
  // Logits of every position (B, T, vocab).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // The vocabulary projection's weight (vocab, hidden): lm_head's, or wte's when tied.
  const torch::Tensor& HeadWeight() const;

  const ModelConfig& config() const { return config_; }
  Gpt2Model transformer{nullptr};
  adapters::Linear lm_head{nullptr};  // null when tied (GPT-2's default)

 private:
  ModelConfig config_;
};
TORCH_MODULE(Gpt2);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_GPT2_H_
