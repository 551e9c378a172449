// The frozen pieces every family's model (GPT-2, RoBERTa, DeBERTa-v2, T5) is built from: the
// base's embeddings and norms never train, and container modules that only give their children
// their place in HF's parameter names.
#ifndef PEFTD_WORKER_MODEL_FROZEN_MODULES_H_
#define PEFTD_WORKER_MODEL_FROZEN_MODULES_H_

#include <torch/torch.h>

#include <initializer_list>
#include <memory>
#include <string>

#include "adapters/linear.h"

namespace peftd::model {

// A container module registered as `name` under `parent`.
std::shared_ptr<torch::nn::Module> Group(torch::nn::Module& parent, const std::string& name);

torch::nn::LayerNorm FrozenLayerNorm(int64_t hidden, double eps);

torch::nn::Embedding FrozenEmbedding(int64_t rows, int64_t cols);

// Whether none of `linears` carries an adapter that is not merged: then each computes every token
// from its frozen weights alone, and a model may leave out the rows nothing reads (a classifier's
// last layer past its first token) without changing what an adapter sees of the batch (a gate's
// statistics, a norm probe's means).
bool Unadapted(std::initializer_list<const adapters::Linear*> linears);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_FROZEN_MODULES_H_
