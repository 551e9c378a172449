#include "worker/model/llama.h"

#include <cmath>
#include <limits>

#include "adapters/cpu_gemm.h"
#include "adapters/linear_ops.h"
#include "worker/model/attention_core.h"
#include "worker/model/causal_mask.h"
#include "worker/model/fused_ops.h"

namespace peftd::model {

namespace F = torch::nn::functional;

torch::Tensor RopeInverseFrequencies(const ModelConfig& c) {
  const int64_t dim = c.head_dim;
  torch::Tensor inv_freq =
      1.0 /
      torch::pow(c.rope_theta, torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat) / dim);
  if (!c.llama3_rope) return inv_freq;
  // HF transformers' _compute_llama3_parameters.
  const auto& s = *c.llama3_rope;
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  torch::Tensor wavelen = 2 * M_PI / inv_freq;
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  torch::Tensor smooth =
      (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  torch::Tensor medium = wavelen.ge(high_freq_wavelen).logical_and(wavelen.le(low_freq_wavelen));
  return torch::where(medium, smoothed, scaled);
}

RmsNormImpl::RmsNormImpl(int64_t hidden, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({hidden}), /*requires_grad=*/false);
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  return RmsNormForward(x, weight, eps_);
}

namespace {

adapters::Linear Proj(int64_t in, int64_t out, bool bias) {
  return adapters::Linear(in, out, bias);
}

}  // namespace

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  q_proj = register_module("q_proj", Proj(c.hidden_size, heads_ * head_dim_, c.attention_bias));
  k_proj = register_module("k_proj", Proj(c.hidden_size, kv_heads_ * head_dim_, c.attention_bias));
  v_proj = register_module("v_proj", Proj(c.hidden_size, kv_heads_ * head_dim_, c.attention_bias));
  o_proj = register_module("o_proj", Proj(heads_ * head_dim_, c.hidden_size, c.o_proj_bias));
  qkv = FusedProjection({q_proj, k_proj, v_proj});
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const torch::Tensor& mask,
                                     bool every_row_sees_a_key, const torch::Tensor& first_key) {
  const int64_t b = x.size(0), t = x.size(1);
  // (B, T, H·D) -> (B, H, T, D), q and k with RoPE (cos/sin (B, T, D)).
  const std::vector<torch::Tensor> qkv_out = qkv.Forward(x);
  torch::Tensor q = RopeForward(qkv_out[0], cos, sin, heads_);
  torch::Tensor k = RopeForward(qkv_out[1], cos, sin, kv_heads_);
  torch::Tensor v = qkv_out[2].view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor out = AttentionCore(q, k, v, mask, 1.0 / std::sqrt(static_cast<double>(head_dim_)),
                                    /*causal=*/every_row_sees_a_key, first_key);
  return o_proj->forward(out);
}

MlpImpl::MlpImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", Proj(c.hidden_size, c.intermediate_size, c.mlp_bias));
  up_proj = register_module("up_proj", Proj(c.hidden_size, c.intermediate_size, c.mlp_bias));
  down_proj = register_module("down_proj", Proj(c.intermediate_size, c.hidden_size, c.mlp_bias));
  gate_up = FusedProjection({gate_proj, up_proj});
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  const std::vector<torch::Tensor> gate_up_out = gate_up.Forward(x);
  return down_proj->forward(SwiGluForward(gate_up_out[0], gate_up_out[1]));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  self_attn = register_module("self_attn", Attention(c));
  mlp = register_module("mlp", Mlp(c));
  input_layernorm = register_module("input_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const torch::Tensor& mask,
                                        bool every_row_sees_a_key, const torch::Tensor& first_key) {
  torch::Tensor h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, mask,
                                           every_row_sees_a_key, first_key);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c) : config_(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  embed_tokens->weight.requires_grad_(false);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c));
  norm = register_module("norm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  inv_freq_ = register_buffer("inv_freq", RopeInverseFrequencies(c));
}

void LlamaModelImpl::SetFusedProjections(bool enabled) {
  for (const auto& layer : *layers) {
    auto* decoder = layer->as<DecoderLayerImpl>();
    decoder->self_attn->qkv.set_enabled(enabled);
    decoder->mlp->gate_up.set_enabled(enabled);
  }
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& input_ids,
                                      const torch::Tensor& attention_mask,
                                      const torch::Tensor& position_ids,
                                      const torch::Tensor& sequence_ids) {
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  const auto device = input_ids.device();
  torch::Tensor real =
      attention_mask.defined()
          ? attention_mask.to(torch::kBool)
          : torch::ones({b, t}, torch::TensorOptions().dtype(torch::kBool).device(device));
  // Positions count real tokens only, so a left-padded sequence sees the same positions as
  // an unpadded one.
  // A packed row gives each record's own positions.
  torch::Tensor positions =
      position_ids.defined() ? position_ids.to(device).to(torch::kFloat)
                             : (real.to(torch::kLong).cumsum(1) - 1).clamp_min(0).to(torch::kFloat);
  torch::Tensor freqs =
      positions.unsqueeze(-1) * inv_freq_.to(device).view({1, 1, -1});  // (B, T, D/2)
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor h = embed_tokens->forward(input_ids);
  torch::Tensor cos = emb.cos().to(h.scalar_type()), sin = emb.sin().to(h.scalar_type());
  // Additive mask (B, T, T): a query sees earlier-or-same real keys.
  torch::Tensor causal =
      torch::ones({t, t}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril();
  torch::Tensor allowed = causal.view({1, t, t}).logical_and(real.view({b, 1, t}));
  if (sequence_ids.defined()) {
    // Block-diagonal: a query sees keys of its own record only.
    torch::Tensor seq = sequence_ids.to(device);
    allowed = allowed.logical_and(seq.view({b, t, 1}).eq(seq.view({b, 1, t})));
  }
  const double lowest = std::numeric_limits<float>::lowest();
  torch::Tensor mask =
      torch::zeros({b, t, t}, h.options()).masked_fill_(allowed.logical_not(), lowest);
  // A row that sees no key (a query left of the first real token) attends uniformly to every
  // key in HF's arithmetic, so the causal schedule, which skips later keys, needs none of them:
  // every sequence starts with a real token.
  const bool every_row_sees_a_key = adapters::GemmCovers(h) && real.select(1, 0).all().item<bool>();
  // A packed row: each query's record starts `position` tokens back.
  torch::Tensor first_key;
  if (position_ids.defined() && sequence_ids.defined()) {
    first_key = (torch::arange(t, torch::kLong).view({1, t}) - position_ids.to(torch::kCPU))
                    .clamp_min(0)
                    .contiguous();
  }
  if (every_row_sees_a_key) first_key = MarkRightPadding(real, first_key);
  for (const auto& layer : *layers) {
    h = layer->as<DecoderLayerImpl>()->forward(h, cos, sin, mask, every_row_sees_a_key, first_key);
  }
  return norm->forward(h);
}

LlamaImpl::LlamaImpl(const ModelConfig& c) : config_(c) {
  model = register_module("model", LlamaModel(c));
  if (c.sequence_classification) {
    score = register_module("score", adapters::Linear(c.hidden_size, c.num_labels, false));
    score->weight.requires_grad_(true);  // the trained head, saved as a module to save
  } else if (!c.tie_word_embeddings) {
    lm_head = register_module("lm_head", adapters::Linear(c.hidden_size, c.vocab_size, false));
  }
}

torch::Tensor LlamaImpl::Hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                const torch::Tensor& position_ids,
                                const torch::Tensor& sequence_ids) {
  return model->forward(input_ids, attention_mask, position_ids, sequence_ids);
}

torch::Tensor LlamaImpl::Head(const torch::Tensor& hidden) {
  if (score) return score->forward(hidden);
  if (lm_head) return lm_head->forward(hidden);
  return adapters::FrozenLinear(hidden, model->embed_tokens->weight);  // tied embeddings
}

torch::Tensor LastTokenIndex(const torch::Tensor& attention_mask) {
  const int64_t t = attention_mask.size(1);
  torch::Tensor pos = torch::arange(t, attention_mask.options().dtype(torch::kLong)).view({1, t});
  return (pos * attention_mask.to(torch::kLong)).amax(1);
}

torch::Tensor LlamaImpl::forward(const torch::Tensor& input_ids,
                                 const torch::Tensor& attention_mask) {
  torch::Tensor h = Hidden(input_ids, attention_mask);
  if (!score) return Head(h);
  torch::Tensor mask = attention_mask.defined() ? attention_mask : torch::ones_like(input_ids);
  torch::Tensor last = LastTokenIndex(mask);
  torch::Tensor pooled = h.index({torch::arange(h.size(0), last.options()), last});
  return Head(pooled);
}

void InitRandomWeights(Llama& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : model->named_parameters()) {
    if (item.key().find("norm") == std::string::npos) {
      item.value().copy_(at::normal(0.0, 0.02, item.value().sizes(), gen));
    }
  }
}

}  // namespace peftd::model
