#include "worker/model/frozen_modules.h"

namespace peftd::model {

std::shared_ptr<torch::nn::Module> Group(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm FrozenLayerNorm(int64_t hidden, double eps) {
  torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({hidden}).eps(eps));
  for (auto& p : norm->parameters()) p.requires_grad_(false);
  return norm;
}

bool Unadapted(std::initializer_list<const adapters::Linear*> linears) {
  for (const adapters::Linear* linear : linears) {
    if ((*linear)->adapter() && !(*linear)->merged()) return false;
  }
  return true;
}

torch::nn::Embedding FrozenEmbedding(int64_t rows, int64_t cols) {
  torch::nn::Embedding e(rows, cols);
  e->weight.requires_grad_(false);
  return e;
}

}  // namespace peftd::model
