#include "worker/model/gpt2.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "adapters/linear_ops.h"
#include "worker/model/attention_core.h"
#include "worker/model/causal_mask.h"
#include "worker/model/frozen_modules.h"

namespace peftd::model {

namespace F = torch::nn::functional;

Gpt2AttentionImpl::Gpt2AttentionImpl(const ModelConfig& c)
    : heads_(c.num_attention_heads), head_dim_(c.head_dim) {
  c_attn = register_module("c_attn", adapters::Linear(c.hidden_size, 3 * c.hidden_size, true));
  c_proj = register_module("c_proj", adapters::Linear(c.hidden_size, c.hidden_size, true));
}

torch::Tensor Gpt2AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask,
                                         bool causal, const torch::Tensor& first_key) {
  const int64_t b = x.size(0), t = x.size(1), hidden = heads_ * head_dim_;
  // HF's split of c_attn's output: q, k, v in that order along the last dimension.
  std::vector<torch::Tensor> qkv = c_attn->forward(x).split(hidden, -1);
  auto heads = [&](const torch::Tensor& y) {
    return y.view({b, t, heads_, head_dim_}).transpose(1, 2);
  };
  torch::Tensor out =
      AttentionCore(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), mask,
                    1.0 / std::sqrt(static_cast<double>(head_dim_)), causal, first_key);
  return c_proj->forward(out);
}

Gpt2MlpImpl::Gpt2MlpImpl(const ModelConfig& c) : tanh_gelu_(c.activation_function == "gelu_new") {
  c_fc = register_module("c_fc", adapters::Linear(c.hidden_size, c.intermediate_size, true));
  c_proj = register_module("c_proj", adapters::Linear(c.intermediate_size, c.hidden_size, true));
}

torch::Tensor Gpt2MlpImpl::forward(const torch::Tensor& x) {
  return c_proj->forward(torch::gelu(c_fc->forward(x), tanh_gelu_ ? "tanh" : "none"));
}

Gpt2BlockImpl::Gpt2BlockImpl(const ModelConfig& c) {
  ln_1 = register_module("ln_1", FrozenLayerNorm(c.hidden_size, c.layer_norm_epsilon));
  attn = register_module("attn", Gpt2Attention(c));
  ln_2 = register_module("ln_2", FrozenLayerNorm(c.hidden_size, c.layer_norm_epsilon));
  mlp = register_module("mlp", Gpt2Mlp(c));
}

torch::Tensor Gpt2BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask, bool causal,
                                     const torch::Tensor& first_key) {
  torch::Tensor h = x + attn->forward(ln_1->forward(x), mask, causal, first_key);
  return h + mlp->forward(ln_2->forward(h));
}

Gpt2ModelImpl::Gpt2ModelImpl(const ModelConfig& c) : max_positions_(c.max_position_embeddings) {
  wte = register_module("wte", FrozenEmbedding(c.vocab_size, c.hidden_size));
  wpe = register_module("wpe", FrozenEmbedding(c.max_position_embeddings, c.hidden_size));
  h = register_module("h", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) h->push_back(Gpt2Block(c));
  ln_f = register_module("ln_f", FrozenLayerNorm(c.hidden_size, c.layer_norm_epsilon));
}

torch::Tensor Gpt2ModelImpl::forward(const torch::Tensor& input_ids,
                                     const torch::Tensor& attention_mask,
                                     const torch::Tensor& position_ids,
                                     const torch::Tensor& sequence_ids) {
  torch::Tensor x = wte->forward(input_ids);
  CausalMask m = BuildCausalMask(input_ids, attention_mask, position_ids, sequence_ids, x);
  // Learned positions exist up to n_positions only; index_select would fail with an opaque
  // message past them.
  TORCH_CHECK(m.positions.numel() == 0 || m.positions.max().item<int64_t>() < max_positions_,
              "GPT-2: a position reaches ", m.positions.max().item<int64_t>(),
              ", past n_positions = ", max_positions_, " (lower max_seq_len)");
  x = x + wpe->forward(m.positions);
  for (const auto& block : *h) {
    x = block->as<Gpt2BlockImpl>()->forward(x, m.mask, m.every_row_sees_a_key, m.first_key);
  }
  return ln_f->forward(x);
}

Gpt2Impl::Gpt2Impl(const ModelConfig& c) : config_(c) {
  transformer = register_module("transformer", Gpt2Model(c));
  if (!c.tie_word_embeddings) {
    lm_head = register_module("lm_head", adapters::Linear(c.hidden_size, c.vocab_size, false));
  }
}

torch::Tensor Gpt2Impl::Hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                               const torch::Tensor& position_ids,
                               const torch::Tensor& sequence_ids) {
  return transformer->forward(input_ids, attention_mask, position_ids, sequence_ids);
}

const torch::Tensor& Gpt2Impl::HeadWeight() const {
  return lm_head ? lm_head->weight : transformer->wte->weight;
}

torch::Tensor Gpt2Impl::Head(const torch::Tensor& hidden) {
  if (lm_head) return lm_head->forward(hidden);
  return adapters::FrozenLinear(hidden, transformer->wte->weight);
}

torch::Tensor Gpt2Impl::forward(const torch::Tensor& input_ids,
                                const torch::Tensor& attention_mask) {
  return Head(Hidden(input_ids, attention_mask));
}

}  // namespace peftd::model
