// The frozen pieces every family's model (GPT-2, RoBERTa, DeBERTa-v2, T5) is built from: the
// base's embeddings and norms never train, and container modules that only give their children
// their place in HF's parameter names.
#ifndef PEFTD_WORKER_MODEL_FROZEN_MODULES_H_
#define PEFTD_WORKER_MODEL_FROZEN_MODULES_H_

#include <torch/torch.h>

#include <memory>
#include <string>

namespace peftd::model {

// A container module registered as `name` under `parent`.
std::shared_ptr<torch::nn::Module> Group(torch::nn::Module& parent, const std::string& name);

torch::nn::LayerNorm FrozenLayerNorm(int64_t hidden, double eps);

torch::nn::Embedding FrozenEmbedding(int64_t rows, int64_t cols);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_FROZEN_MODULES_H_
