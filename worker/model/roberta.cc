#include "worker/model/roberta.h"

#include <cmath>
#include <limits>
#include <memory>

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
}

torch::Tensor RobertaLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t b = x.size(0), t = x.size(1);
  auto heads = [&](const torch::Tensor& y) {
    return y.view({b, t, heads_, head_dim_}).transpose(1, 2);
  };
  torch::Tensor q = heads(query->forward(x)), k = heads(key->forward(x));
  torch::Tensor v = heads(value->forward(x));
  torch::Tensor scores =
      torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_dim_)) + mask;
  torch::Tensor context = torch::matmul(torch::softmax(scores, -1), v);
  context = context.transpose(1, 2).reshape({b, t, heads_ * head_dim_});
  torch::Tensor h = attention_norm->forward(attention_dense->forward(context) + x);
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
                                  const torch::Tensor& attention_mask) {
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
  // HF's extended mask: (1 − m)·lowest, added to every head's scores.
  const double lowest = x.scalar_type() == torch::kDouble
                            ? std::numeric_limits<double>::lowest()
                            : static_cast<double>(std::numeric_limits<float>::lowest());
  torch::Tensor mask =
      (1.0 - real.to(x.scalar_type())).mul(lowest).view({input_ids.size(0), 1, 1, -1});
  for (const auto& layer : *layers) x = layer->as<RobertaLayerImpl>()->forward(x, mask);
  return x;
}

torch::Tensor RobertaImpl::Classify(const torch::Tensor& hidden) {
  TORCH_CHECK(classifier_dense, "RoBERTa: built without a classifier (num_labels)");
  torch::Tensor first = hidden.select(1, 0);
  return classifier_out_proj->forward(torch::tanh(classifier_dense->forward(first)));
}

torch::Tensor RobertaImpl::forward(const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask) {
  return Classify(Hidden(input_ids, attention_mask));
}

}  // namespace peftd::model
