#include "worker/model/deberta_v2.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "adapters/token_gate.h"
#include "worker/model/frozen_modules.h"

namespace peftd::model {
namespace {

// transformers' ACT2FN of the names model_config_deberta.cc accepts.
torch::Tensor Activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu_new") return torch::gelu(x, "tanh");
  if (name == "tanh") return torch::tanh(x);
  if (name == "relu") return torch::relu(x);
  return torch::gelu(x);
}

}  // namespace

torch::Tensor DebertaRelativePositions(int64_t query_size, int64_t key_size, int64_t bucket_size,
                                       int64_t max_position) {
  torch::Tensor rel = torch::arange(query_size, torch::kLong).unsqueeze(1) -
                      torch::arange(key_size, torch::kLong).unsqueeze(0);
  if (bucket_size <= 0 || max_position <= 0) return rel;
  // make_log_bucket_position: offsets inside ±mid stay, farther ones share logarithmic buckets.
  const int64_t mid = bucket_size / 2;
  torch::Tensor sign = torch::sign(rel);
  torch::Tensor abs_pos = torch::where(rel.lt(mid).logical_and(rel.gt(-mid)),
                                       torch::full_like(rel, mid - 1), torch::abs(rel));
  const torch::Tensor log_base = torch::log(torch::tensor(
      static_cast<float>(static_cast<double>(max_position - 1) / static_cast<double>(mid))));
  torch::Tensor log_pos =
      torch::ceil(torch::log(abs_pos.to(torch::kFloat) / static_cast<float>(mid)) / log_base *
                  static_cast<float>(mid - 1)) +
      static_cast<float>(mid);
  torch::Tensor bucket =
      torch::where(abs_pos.le(mid), rel.to(torch::kFloat), log_pos * sign.to(torch::kFloat));
  return bucket.to(torch::kLong);
}

torch::Tensor ProjectPositions(adapters::LinearImpl& linear, const torch::Tensor& rel) {
  const std::shared_ptr<adapters::Adapter>& adapter = linear.adapter();
  if (!adapter || linear.merged()) return linear.forward(rel);
  // The adapter itself rather than linear.forward: the norm probe observes tokens only.
  auto* gate = dynamic_cast<adapters::TokenGate*>(adapter.get());
  adapters::Adapter* method = gate != nullptr ? gate->inner().get() : adapter.get();
  return method->Forward(rel, linear.weight, linear.bias);
}

DebertaV2LayerImpl::DebertaV2LayerImpl(const ModelConfig& c)
    : heads_(c.num_attention_heads),
      head_dim_(c.head_dim),
      span_(c.position_buckets > 0 ? c.position_buckets : c.max_relative_positions),
      c2p_(c.pos_att_c2p),
      p2c_(c.pos_att_p2c),
      relative_(c.relative_attention),
      tanh_gelu_(c.activation_function == "gelu_new") {
  // DisentangledSelfAttention's scale: sqrt(head_dim · (1 + terms)) computed in float32, then
  // converted to the scores' dtype (a float64 model sees the float32-rounded root).
  const int64_t factor = 1 + (c2p_ ? 1 : 0) + (p2c_ ? 1 : 0);
  scale_ = static_cast<double>(std::sqrt(static_cast<float>(head_dim_ * factor)));
  const int64_t h = c.hidden_size;
  auto attention = Group(*this, "attention");
  auto self = Group(*attention, "self");
  query_proj = self->register_module("query_proj", adapters::Linear(h, h, true));
  key_proj = self->register_module("key_proj", adapters::Linear(h, h, true));
  value_proj = self->register_module("value_proj", adapters::Linear(h, h, true));
  auto attention_output = Group(*attention, "output");
  attention_dense = attention_output->register_module("dense", adapters::Linear(h, h, true));
  attention_norm =
      attention_output->register_module("LayerNorm", FrozenLayerNorm(h, c.layer_norm_epsilon));
  auto intermediate = Group(*this, "intermediate");
  intermediate_dense =
      intermediate->register_module("dense", adapters::Linear(h, c.intermediate_size, true));
  auto output = Group(*this, "output");
  output_dense = output->register_module("dense", adapters::Linear(c.intermediate_size, h, true));
  output_norm = output->register_module("LayerNorm", FrozenLayerNorm(h, c.layer_norm_epsilon));
  qkv = FusedProjection({query_proj, key_proj, value_proj});
}

bool DebertaV2LayerImpl::FirstRowsOnly() const {
  return Unadapted({&attention_dense, &intermediate_dense, &output_dense});
}

torch::Tensor DebertaV2LayerImpl::forward(const torch::Tensor& x, const torch::Tensor& pair_mask_in,
                                          const torch::Tensor& rel_pos, const torch::Tensor& rel,
                                          int64_t first_rows) {
  const int64_t b = x.size(0), t = x.size(1);
  // The query rows computed: all, or the first `first_rows` (their scores against every key).
  const int64_t tq = first_rows > 0 ? first_rows : t;
  auto heads = [&](const torch::Tensor& y) {
    return y.view({b, y.size(1), heads_, head_dim_}).transpose(1, 2);
  };
  const std::vector<torch::Tensor> qkv_out = qkv.Forward(x);
  torch::Tensor q = heads(qkv_out[0].narrow(1, 0, tq)), k = heads(qkv_out[1]);
  torch::Tensor v = heads(qkv_out[2]);
  const torch::Tensor pair_mask = pair_mask_in.narrow(2, 0, tq);
  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)) / scale_;
  if (relative_ && (c2p_ || p2c_)) {
    // The relative embeddings through the shared projections: (heads, 2·span, head_dim).
    const int64_t rows = rel.size(0);
    auto pos_heads = [&](const torch::Tensor& y) {
      return y.view({rows, heads_, head_dim_}).transpose(0, 1);
    };
    if (c2p_) {
      // Content to position: query_i · key_proj(rel)[clamp(δ(i, j) + span)].
      torch::Tensor pos_key = pos_heads(ProjectPositions(*key_proj, rel));
      torch::Tensor c2p = torch::matmul(q, pos_key.transpose(-1, -2));  // (B, H, T, 2·span)
      torch::Tensor index = torch::clamp(rel_pos.narrow(0, 0, tq) + span_, 0, 2 * span_ - 1)
                                .expand({b, heads_, tq, t});
      scores = scores + torch::gather(c2p, -1, index) / scale_;
    }
    if (p2c_) {
      // Position to content: key_j · query_proj(rel)[clamp(−δ(j, i) + span)], read transposed.
      torch::Tensor pos_query = pos_heads(ProjectPositions(*query_proj, rel));
      torch::Tensor p2c = torch::matmul(k, pos_query.transpose(-1, -2));  // (B, H, T, 2·span)
      // Gathered along the keys' rows of p2c, (keys, queries): the computed queries' columns.
      torch::Tensor index = torch::clamp(-rel_pos.narrow(1, 0, tq) + span_, 0, 2 * span_ - 1)
                                .expand({b, heads_, t, tq});
      scores = scores + torch::gather(p2c, -1, index).transpose(-1, -2) / scale_;
    }
  }
  // XSoftmax: masked pairs get the dtype's lowest before the softmax and 0 after it (a padding
  // query's row is all 0).
  const double lowest = scores.scalar_type() == torch::kDouble
                            ? std::numeric_limits<double>::lowest()
                            : static_cast<double>(std::numeric_limits<float>::lowest());
  torch::Tensor off = pair_mask.logical_not();
  torch::Tensor probs = torch::softmax(scores.masked_fill(off, lowest), -1).masked_fill(off, 0.0);
  torch::Tensor context =
      torch::matmul(probs, v).transpose(1, 2).reshape({b, tq, heads_ * head_dim_});
  torch::Tensor h = attention_norm->forward(attention_dense->forward(context) + x.narrow(1, 0, tq));
  torch::Tensor inner = torch::gelu(intermediate_dense->forward(h), tanh_gelu_ ? "tanh" : "none");
  return output_norm->forward(output_dense->forward(inner) + h);
}

DebertaV2Impl::DebertaV2Impl(const ModelConfig& c) : config_(c) {
  const int64_t h = c.hidden_size;
  auto deberta = Group(*this, "deberta");
  auto embeddings = Group(*deberta, "embeddings");
  word_embeddings =
      embeddings->register_module("word_embeddings", FrozenEmbedding(c.vocab_size, h));
  if (c.position_biased_input) {
    position_embeddings = embeddings->register_module(
        "position_embeddings", FrozenEmbedding(c.max_position_embeddings, h));
  }
  if (c.type_vocab_size > 0) {
    token_type_embeddings =
        embeddings->register_module("token_type_embeddings", FrozenEmbedding(c.type_vocab_size, h));
  }
  embeddings_norm =
      embeddings->register_module("LayerNorm", FrozenLayerNorm(h, c.layer_norm_epsilon));
  auto encoder = Group(*deberta, "encoder");
  layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DebertaV2Layer(c));
  if (c.relative_attention) {
    const int64_t rows =
        2 * (c.position_buckets > 0 ? c.position_buckets : c.max_relative_positions);
    rel_embeddings = encoder->register_module("rel_embeddings", FrozenEmbedding(rows, h));
    if (c.norm_rel_ebd_layer_norm) {
      rel_norm = encoder->register_module("LayerNorm", FrozenLayerNorm(h, c.layer_norm_epsilon));
    }
  }
  if (c.sequence_classification) {
    auto pooler = Group(*this, "pooler");
    pooler_dense = pooler->register_module("dense", torch::nn::Linear(h, h));
    for (auto& p : pooler_dense->parameters()) p.requires_grad_(false);
    classifier = register_module("classifier", torch::nn::Linear(h, c.num_labels));
  }
}

torch::Tensor DebertaV2Impl::Hidden(const torch::Tensor& input_ids,
                                    const torch::Tensor& attention_mask, bool first_rows_only) {
  const int64_t t = input_ids.size(1);
  torch::Tensor real = attention_mask.defined() ? attention_mask.to(torch::kBool)
                                                : torch::ones_like(input_ids, torch::kBool);
  // DebertaV2Embeddings: positions 0..T−1 (when added to the input), token type 0, LayerNorm,
  // then padding zeroed.
  torch::Tensor x = word_embeddings->forward(input_ids);
  if (position_embeddings) {
    TORCH_CHECK(t <= config_.max_position_embeddings, "DeBERTa: ", t,
                " tokens, past max_position_embeddings = ", config_.max_position_embeddings,
                " (lower max_seq_len)");
    x = x + position_embeddings->weight.slice(0, 0, t);
  }
  if (token_type_embeddings) x = x + token_type_embeddings->weight[0];
  x = embeddings_norm->forward(x) * real.unsqueeze(-1).to(x.scalar_type());
  // get_attention_mask: a pair attends when both tokens are real.
  torch::Tensor pair = real.unsqueeze(1).unsqueeze(2).logical_and(real.unsqueeze(1).unsqueeze(3));
  torch::Tensor rel_pos, rel;
  if (config_.relative_attention) {
    rel_pos =
        DebertaRelativePositions(t, t, config_.position_buckets, config_.max_relative_positions)
            .to(input_ids.device());
    rel = rel_embeddings->weight;
    if (rel_norm) rel = rel_norm->forward(rel);
  }
  const int64_t n = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i < n; ++i) {
    auto* layer = layers[i]->as<DebertaV2LayerImpl>();
    const bool first_only = first_rows_only && fused_paths_ && i == n - 1 && layer->FirstRowsOnly();
    x = layer->forward(x, pair, rel_pos, rel, first_only ? 1 : 0);
  }
  return x;
}

void DebertaV2Impl::SetFusedPaths(bool enabled) {
  fused_paths_ = enabled;
  for (const auto& layer : *layers) layer->as<DebertaV2LayerImpl>()->qkv.set_enabled(enabled);
}

torch::Tensor DebertaV2Impl::Classify(const torch::Tensor& hidden) {
  TORCH_CHECK(classifier, "DeBERTa: built without a classifier (num_labels)");
  torch::Tensor pooled =
      Activation(config_.pooler_hidden_act, pooler_dense->forward(hidden.select(1, 0)));
  return classifier->forward(pooled);
}

torch::Tensor DebertaV2Impl::forward(const torch::Tensor& input_ids,
                                     const torch::Tensor& attention_mask) {
  return Classify(Hidden(input_ids, attention_mask, /*first_rows_only=*/true));
}

}  // namespace peftd::model
