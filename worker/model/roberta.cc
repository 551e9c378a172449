#include "worker/model/roberta.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "worker/model/attention_core.h"
#include "worker/model/causal_mask.h"
#include "worker/model/frozen_modules.h"

namespace peftd::model {

RobertaLayerImpl::RobertaLayerImpl(const ModelConfig& c)
    : heads_(c.num_attention_heads),
      head_dim_(c.head_dim),
      tanh_gelu_(c.activation_function == "gelu_new") {
  const int64_t h = c.hidden_size;
  auto attention = Group(*this, "attention");
  auto self = Group(*attention, "self");
  query = self->register_module("query", adapters::Linear(h, h, true));
  key = self->register_module("key", adapters::Linear(h, h, true));
  value = self->register_module("value", adapters::Linear(h, h, true));
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
  qkv = FusedProjection({query, key, value});
}

bool RobertaLayerImpl::FirstRowsOnly() const {
  return Unadapted({&attention_dense, &intermediate_dense, &output_dense});
}

torch::Tensor RobertaLayerImpl::forward(const torch::Tensor& x, const EncoderMask& mask,
                                        int64_t first_rows) {
  const int64_t b = x.size(0), t = x.size(1);
  auto heads = [&](const torch::Tensor& y) {
    return y.view({b, y.size(1), heads_, head_dim_}).transpose(1, 2);
  };
  const std::vector<torch::Tensor> qkv_out = qkv.Forward(x);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  torch::Tensor context, residual = x;
  if (fused_attention) {
    torch::Tensor q = qkv_out[0];
    if (first_rows > 0) {
      q = q.narrow(1, 0, first_rows);
      residual = x.narrow(1, 0, first_rows);
    }
    context = AttentionCore(heads(q), heads(qkv_out[1]), heads(qkv_out[2]), mask.keys, scale,
                            /*causal=*/false, mask.first_key);
  } else {
    torch::Tensor keys = mask.keys.defined()
                             ? mask.keys.view({b, 1, t}).expand({b, t, t}).contiguous()
                             : torch::zeros({b, t, t}, x.options());
    context = AttentionCoreReference(heads(qkv_out[0]), heads(qkv_out[1]), heads(qkv_out[2]), keys,
                                     scale);
  }
  torch::Tensor h = attention_norm->forward(attention_dense->forward(context) + residual);
  torch::Tensor inner = torch::gelu(intermediate_dense->forward(h), tanh_gelu_ ? "tanh" : "none");
  return output_norm->forward(output_dense->forward(inner) + h);
}

RobertaImpl::RobertaImpl(const ModelConfig& c) : config_(c) {
  const int64_t h = c.hidden_size;
  auto roberta = Group(*this, "roberta");
  auto embeddings = Group(*roberta, "embeddings");
  word_embeddings =
      embeddings->register_module("word_embeddings", FrozenEmbedding(c.vocab_size, h));
  position_embeddings = embeddings->register_module("position_embeddings",
                                                    FrozenEmbedding(c.max_position_embeddings, h));
  token_type_embeddings =
      embeddings->register_module("token_type_embeddings", FrozenEmbedding(c.type_vocab_size, h));
  embeddings_norm =
      embeddings->register_module("LayerNorm", FrozenLayerNorm(h, c.layer_norm_epsilon));
  auto encoder = Group(*roberta, "encoder");
  layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(RobertaLayer(c));
  if (c.sequence_classification) {
    auto classifier = Group(*this, "classifier");
    classifier_dense = classifier->register_module("dense", torch::nn::Linear(h, h));
    classifier_out_proj =
        classifier->register_module("out_proj", torch::nn::Linear(h, c.num_labels));
  }
}

torch::Tensor RobertaImpl::Hidden(const torch::Tensor& input_ids,
                                  const torch::Tensor& attention_mask, bool first_rows_only) {
  torch::Tensor real = attention_mask.defined() ? attention_mask.to(torch::kBool)
                                                : torch::ones_like(input_ids, torch::kBool);
  // create_position_ids_from_input_ids: real tokens count from padding_idx + 1. A padding id
  // inside the text is no position there either; padding keeps padding_idx.
  const int64_t pad = config_.pad_token_id;
  torch::Tensor counted = input_ids.ne(pad).logical_and(real).to(torch::kLong);
  torch::Tensor positions = counted.cumsum(1) * counted + pad;
  TORCH_CHECK(
      positions.numel() == 0 || positions.max().item<int64_t>() < config_.max_position_embeddings,
      "RoBERTa: a position reaches ", positions.max().item<int64_t>(),
      ", past max_position_embeddings = ", config_.max_position_embeddings,
      " (lower max_seq_len to at most ", config_.max_position_embeddings - config_.pad_token_id - 1,
      ")");
  torch::Tensor x = word_embeddings->forward(input_ids) + token_type_embeddings->weight[0] +
                    position_embeddings->forward(positions);
  x = embeddings_norm->forward(x);
  EncoderMask mask;
  if (!real.all().item<bool>()) {
    // HF's extended mask: (1 − m)·lowest, added to every head's scores, one row of keys per
    // sequence; the right padding's queries and keys are skipped as well.
    const double lowest = x.scalar_type() == torch::kDouble
                              ? std::numeric_limits<double>::lowest()
                              : static_cast<double>(std::numeric_limits<float>::lowest());
    mask.keys = (1.0 - real.to(x.scalar_type())).mul(lowest);
    mask.first_key = MarkRightPadding(real, torch::Tensor());
  }
  const int64_t n = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i < n; ++i) {
    auto* layer = layers[i]->as<RobertaLayerImpl>();
    const bool first_only =
        first_rows_only && i == n - 1 && layer->fused_attention && layer->FirstRowsOnly();
    x = layer->forward(x, mask, first_only ? 1 : 0);
  }
  return x;
}

void RobertaImpl::SetFusedPaths(bool enabled) {
  for (const auto& layer : *layers) {
    auto* l = layer->as<RobertaLayerImpl>();
    l->qkv.set_enabled(enabled);
    l->fused_attention = enabled;
  }
}

torch::Tensor RobertaImpl::Classify(const torch::Tensor& hidden) {
  TORCH_CHECK(classifier_dense, "RoBERTa: built without a classifier (num_labels)");
  torch::Tensor first = hidden.select(1, 0);
  return classifier_out_proj->forward(torch::tanh(classifier_dense->forward(first)));
}

torch::Tensor RobertaImpl::forward(const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask) {
  return Classify(Hidden(input_ids, attention_mask, /*first_rows_only=*/true));
}

}  // namespace peftd::model
