#include "worker/model/t5.h"

#include <cmath>
#include <limits>

#include "adapters/linear_ops.h"
#include "worker/model/frozen_modules.h"

namespace peftd::model {

namespace {

torch::Tensor Activation(const torch::Tensor& x, const std::string& act) {
  if (act == "relu") return torch::relu(x);
  if (act == "silu") return torch::silu(x);
  return torch::gelu(x, act == "gelu_new" ? "tanh" : "none");
}

// (B, T) 1 = real -> additive (B, 1, 1, T): 0 where a key may be seen, the dtype's lowest value
// elsewhere (HF's extended attention mask).
torch::Tensor KeyMask(const torch::Tensor& mask, const torch::TensorOptions& options) {
  const double lowest = options.dtype() == torch::kDouble
                            ? std::numeric_limits<double>::lowest()
                            : static_cast<double>(std::numeric_limits<float>::lowest());
  return ((1 - mask.to(options)) * lowest).view({mask.size(0), 1, 1, mask.size(1)});
}

}  // namespace

T5LayerNormImpl::T5LayerNormImpl(int64_t hidden, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({hidden}), /*requires_grad=*/false);
}

torch::Tensor T5LayerNormImpl::forward(const torch::Tensor& x) {
  torch::Tensor variance = x.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (x * torch::rsqrt(variance + eps_));
}

torch::Tensor T5RelativePositionBucket(const torch::Tensor& relative_position, bool bidirectional,
                                       int64_t num_buckets, int64_t max_distance) {
  torch::Tensor buckets = torch::zeros_like(relative_position);
  torch::Tensor rel = relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + rel.gt(0).to(torch::kLong) * num_buckets;
    rel = rel.abs();
  } else {
    rel = -torch::min(rel, torch::zeros_like(rel));
  }
  const int64_t max_exact = num_buckets / 2;
  torch::Tensor is_small = rel.lt(max_exact);
  // As HF: log in float32, then truncated toward zero.
  torch::Tensor large =
      max_exact + (torch::log(rel.to(torch::kFloat) / static_cast<float>(max_exact)) /
                   static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact)) *
                   static_cast<float>(num_buckets - max_exact))
                      .to(torch::kLong);
  large = torch::min(large, torch::full_like(large, num_buckets - 1));
  return buckets + torch::where(is_small, rel, large);
}

T5AttentionImpl::T5AttentionImpl(const ModelConfig& c, bool has_relative_attention_bias,
                                 bool bidirectional)
    : heads_(c.num_attention_heads),
      head_dim_(c.head_dim),
      num_buckets_(c.relative_attention_num_buckets),
      max_distance_(c.relative_attention_max_distance),
      bidirectional_(bidirectional) {
  const int64_t inner = heads_ * head_dim_;
  q = register_module("q", adapters::Linear(c.hidden_size, inner, false));
  k = register_module("k", adapters::Linear(c.hidden_size, inner, false));
  v = register_module("v", adapters::Linear(c.hidden_size, inner, false));
  o = register_module("o", adapters::Linear(inner, c.hidden_size, false));
  if (has_relative_attention_bias) {
    relative_attention_bias =
        register_module("relative_attention_bias", FrozenEmbedding(num_buckets_, heads_));
  }
}

torch::Tensor T5AttentionImpl::ComputeBias(int64_t query_length, int64_t key_length) {
  const auto device = relative_attention_bias->weight.device();
  torch::Tensor context = torch::arange(query_length, torch::dtype(torch::kLong).device(device));
  torch::Tensor memory = torch::arange(key_length, torch::dtype(torch::kLong).device(device));
  torch::Tensor relative = memory.unsqueeze(0) - context.unsqueeze(1);  // (Tq, Tk)
  torch::Tensor bucket =
      T5RelativePositionBucket(relative, bidirectional_, num_buckets_, max_distance_);
  return relative_attention_bias->forward(bucket).permute({2, 0, 1}).unsqueeze(0);
}

torch::Tensor T5AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& kv,
                                       const torch::Tensor& bias, adapters::GateContext* gate,
                                       const torch::Tensor& kv_mask) {
  const int64_t b = x.size(0), tq = x.size(1);
  const torch::Tensor& source = kv.defined() ? kv : x;
  const int64_t tk = source.size(1);
  auto heads = [&](const torch::Tensor& y, int64_t t) {
    return y.reshape({b, t, heads_, head_dim_}).transpose(1, 2);
  };
  torch::Tensor query = heads(q->forward(x), tq);
  torch::Tensor saved;
  if (gate && kv.defined()) {
    saved = gate->token_mask;
    gate->token_mask = kv_mask;
  }
  torch::Tensor key = heads(k->forward(source), tk);
  torch::Tensor value = heads(v->forward(source), tk);
  if (gate && kv.defined()) gate->token_mask = saved;
  // No 1/sqrt(d) scale: T5 folds it into the initialisation of q.
  torch::Tensor scores = torch::matmul(query, key.transpose(-1, -2)) + bias;
  // HF takes the softmax in float32 for half types; float32 and float64 keep their own.
  torch::Tensor weights =
      scores.scalar_type() == torch::kDouble
          ? torch::softmax(scores, -1)
          : torch::softmax(scores.to(torch::kFloat), -1).to(scores.scalar_type());
  torch::Tensor out = torch::matmul(weights, value).transpose(1, 2).reshape({b, tq, -1});
  return o->forward(out);
}

T5DenseImpl::T5DenseImpl(const ModelConfig& c) : act_(c.activation_function) {
  if (c.gated_feed_forward) {
    wi_0 = register_module("wi_0", adapters::Linear(c.hidden_size, c.intermediate_size, false));
    wi_1 = register_module("wi_1", adapters::Linear(c.hidden_size, c.intermediate_size, false));
  } else {
    wi = register_module("wi", adapters::Linear(c.hidden_size, c.intermediate_size, false));
  }
  wo = register_module("wo", adapters::Linear(c.intermediate_size, c.hidden_size, false));
}

torch::Tensor T5DenseImpl::forward(const torch::Tensor& x) {
  if (wi) return wo->forward(Activation(wi->forward(x), act_));
  return wo->forward(Activation(wi_0->forward(x), act_) * wi_1->forward(x));
}

T5LayerAttentionImpl::T5LayerAttentionImpl(const ModelConfig& c, bool cross,
                                           bool has_relative_attention_bias, bool bidirectional) {
  attention = register_module(cross ? "EncDecAttention" : "SelfAttention",
                              T5Attention(c, has_relative_attention_bias, bidirectional));
  layer_norm = register_module("layer_norm", T5LayerNorm(c.hidden_size, c.layer_norm_epsilon));
}

T5LayerFFImpl::T5LayerFFImpl(const ModelConfig& c) {
  DenseReluDense = register_module("DenseReluDense", T5Dense(c));
  layer_norm = register_module("layer_norm", T5LayerNorm(c.hidden_size, c.layer_norm_epsilon));
}

torch::Tensor T5LayerFFImpl::forward(const torch::Tensor& x) {
  return x + DenseReluDense->forward(layer_norm->forward(x));
}

T5BlockImpl::T5BlockImpl(const ModelConfig& c, bool is_decoder, bool first) {
  layer = register_module("layer", torch::nn::ModuleList());
  layer->push_back(T5LayerAttention(c, /*cross=*/false, /*has_relative_attention_bias=*/first,
                                    /*bidirectional=*/!is_decoder));
  if (is_decoder) layer->push_back(T5LayerAttention(c, /*cross=*/true, false, false));
  layer->push_back(T5LayerFF(c));
}

T5StackImpl::T5StackImpl(const ModelConfig& c, bool is_decoder) : is_decoder_(is_decoder) {
  block = register_module("block", torch::nn::ModuleList());
  const int64_t n = is_decoder ? c.num_decoder_layers : c.num_hidden_layers;
  for (int64_t i = 0; i < n; ++i) {
    // Each block is HF's T5Block: a ModuleList `layer` of self-attention, cross-attention (the
    // decoder's) and the feed-forward.
    block->push_back(T5Block(c, is_decoder, /*first=*/i == 0));
  }
  final_layer_norm =
      register_module("final_layer_norm", T5LayerNorm(c.hidden_size, c.layer_norm_epsilon));
}

torch::Tensor T5StackImpl::forward(const torch::Tensor& x_in, const torch::Tensor& mask,
                                   const torch::Tensor& encoder_hidden,
                                   const torch::Tensor& encoder_mask, adapters::GateContext* gate) {
  const int64_t t = x_in.size(1);
  const auto options = x_in.options();
  torch::Tensor x = x_in;
  torch::Tensor self_mask;
  if (is_decoder_) {
    // Causal: a query sees the keys up to itself.
    const double lowest = options.dtype() == torch::kDouble
                              ? std::numeric_limits<double>::lowest()
                              : static_cast<double>(std::numeric_limits<float>::lowest());
    self_mask = torch::ones({t, t}, options).triu(1).mul(lowest).view({1, 1, t, t});
  } else {
    self_mask = KeyMask(mask, options);
  }
  torch::Tensor cross_bias;
  if (is_decoder_) cross_bias = KeyMask(encoder_mask, options);
  torch::Tensor position_bias;  // computed by the first block, shared by the others
  if (gate) gate->token_mask = mask;
  for (const auto& module : *block) {
    torch::nn::ModuleList& layer = module->as<T5BlockImpl>()->layer;
    auto* self = layer[0]->as<T5LayerAttentionImpl>();
    if (!position_bias.defined()) {
      position_bias = self->attention->ComputeBias(t, t).to(x_in.scalar_type()) + self_mask;
    }
    x = x + self->attention->forward(self->layer_norm->forward(x), {}, position_bias);
    if (is_decoder_) {
      auto* cross = layer[1]->as<T5LayerAttentionImpl>();
      x = x + cross->attention->forward(cross->layer_norm->forward(x), encoder_hidden, cross_bias,
                                        gate, encoder_mask);
    }
    x = layer[is_decoder_ ? 2 : 1]->as<T5LayerFFImpl>()->forward(x);
  }
  return final_layer_norm->forward(x);
}

T5Impl::T5Impl(const ModelConfig& c) : config_(c) {
  shared = register_module("shared", FrozenEmbedding(c.vocab_size, c.hidden_size));
  encoder = register_module("encoder", T5Stack(c, /*is_decoder=*/false));
  decoder = register_module("decoder", T5Stack(c, /*is_decoder=*/true));
  if (!c.tie_word_embeddings) {
    lm_head = register_module("lm_head", adapters::Linear(c.hidden_size, c.vocab_size, false));
  }
}

torch::Tensor T5Impl::Encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                             adapters::GateContext* gate) {
  torch::Tensor mask =
      attention_mask.defined() ? attention_mask : torch::ones_like(input_ids, torch::kLong);
  return encoder->forward(shared->forward(input_ids), mask, {}, {}, gate);
}

torch::Tensor T5Impl::Decode(const torch::Tensor& decoder_input_ids,
                             const torch::Tensor& encoder_hidden, const torch::Tensor& encoder_mask,
                             adapters::GateContext* gate, const torch::Tensor& decoder_mask) {
  const auto ids = torch::TensorOptions().dtype(torch::kLong).device(encoder_hidden.device());
  torch::Tensor enc_mask = encoder_mask.defined()
                               ? encoder_mask
                               : torch::ones({encoder_hidden.size(0), encoder_hidden.size(1)}, ids);
  torch::Tensor dec_mask =
      decoder_mask.defined() ? decoder_mask : torch::ones_like(decoder_input_ids, torch::kLong);
  return decoder->forward(shared->forward(decoder_input_ids), dec_mask, encoder_hidden, enc_mask,
                          gate);
}

double T5Impl::HeadScale() const {
  return lm_head ? 1.0 : 1.0 / std::sqrt(static_cast<double>(config_.hidden_size));
}

const torch::Tensor& T5Impl::HeadWeight() const {
  return lm_head ? lm_head->weight : shared->weight;
}

torch::Tensor T5Impl::Head(const torch::Tensor& decoder_hidden) {
  if (lm_head) return lm_head->forward(decoder_hidden);
  return adapters::FrozenLinear(decoder_hidden * HeadScale(), shared->weight);
}

torch::Tensor T5Impl::ShiftRight(const torch::Tensor& labels) const {
  torch::Tensor shifted = torch::empty_like(labels);
  shifted.narrow(1, 0, 1).fill_(config_.decoder_start_token_id);
  const int64_t t = labels.size(1);
  if (t > 1) shifted.narrow(1, 1, t - 1).copy_(labels.narrow(1, 0, t - 1));
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : 0;
  return shifted.masked_fill(shifted.eq(-100), pad);
}

torch::Tensor T5Impl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                              const torch::Tensor& labels) {
  torch::Tensor enc = Encode(input_ids, attention_mask);
  return Head(Decode(ShiftRight(labels), enc, attention_mask));
}

}  // namespace peftd::model
