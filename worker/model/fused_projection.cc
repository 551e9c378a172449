#include "worker/model/fused_projection.h"

#include <utility>

#include "adapters/linear_ops.h"

namespace peftd::model {

FusedProjection::FusedProjection(std::vector<adapters::Linear> parts) : parts_(std::move(parts)) {
  for (const auto& part : parts_) outs_.push_back(part->out_features());
  Concatenate();
}

bool FusedProjection::Aliased() const {
  if (!weight_.defined()) return false;
  // Pointer arithmetic, not narrow(): this runs every forward and should cost no ATen call.
  const int64_t element = static_cast<int64_t>(weight_.element_size());
  const int64_t in = weight_.size(1);
  int64_t offset = 0;
  for (const auto& part : parts_) {
    const torch::Tensor& w = part->weight;
    if (w.scalar_type() != weight_.scalar_type() || w.device() != weight_.device() ||
        w.dim() != 2 || w.size(0) != part->out_features() || w.size(1) != in ||
        !w.is_contiguous() ||
        w.data_ptr() != static_cast<char*>(weight_.data_ptr()) + offset * in * element) {
      return false;
    }
    if (part->bias.defined() != bias_.defined()) return false;
    if (bias_.defined() &&
        (part->bias.scalar_type() != bias_.scalar_type() ||
         part->bias.data_ptr() != static_cast<char*>(bias_.data_ptr()) + offset * element)) {
      return false;
    }
    offset += part->out_features();
  }
  return true;
}

void FusedProjection::Concatenate() {
  torch::NoGradGuard no_grad;
  weight_ = bias_ = torch::Tensor();
  std::vector<torch::Tensor> weights, biases;
  for (const auto& part : parts_) {
    const torch::Tensor& w = parts_.front()->weight;
    if (part->weight.scalar_type() != w.scalar_type() || part->weight.device() != w.device() ||
        part->weight.requires_grad() || part->bias.defined() != parts_.front()->bias.defined()) {
      return;
    }
    weights.push_back(part->weight);
    if (part->bias.defined()) {
      if (part->bias.scalar_type() != w.scalar_type()) return;
      biases.push_back(part->bias);
    }
  }
  torch::Tensor weight = torch::cat(weights, 0);
  torch::Tensor bias = biases.empty() ? torch::Tensor() : torch::cat(biases, 0);
  // set_data keeps each parameter the same object (registered under its HF name) and frees its
  // own storage: it now reads and writes its rows of the concatenation.
  int64_t offset = 0;
  for (auto& part : parts_) {
    const int64_t out = part->out_features();
    part->weight.set_data(weight.narrow(0, offset, out));
    if (bias.defined()) part->bias.set_data(bias.narrow(0, offset, out));
    offset += out;
  }
  weight_ = weight;
  bias_ = bias;
}

std::vector<torch::Tensor> FusedProjection::Forward(const torch::Tensor& x) {
  last_fused_ = false;
  std::vector<adapters::LowRankUpdate> updates(parts_.size());
  bool fusable = enabled_;
  for (size_t i = 0; fusable && i < parts_.size(); ++i) {
    const auto& part = parts_[i];
    if (!part->adapter() || part->merged()) continue;  // a merged layer is its weight
    if (!part->adapter()->UsesBase()) fusable = false;
    if (auto update = part->adapter()->LowRank()) updates[i] = *update;
  }
  if (fusable && !Aliased()) Concatenate();
  if (!fusable || !weight_.defined()) {
    std::vector<torch::Tensor> out;
    for (auto& part : parts_) out.push_back(part->forward(x));
    return out;
  }
  std::vector<torch::Tensor> out = adapters::FusedLinear(x, weight_, bias_, outs_, updates);
  for (size_t i = 0; i < parts_.size(); ++i) {
    const auto& part = parts_[i];
    parts_[i]->ObserveInput(x);  // what each part's own forward() would have recorded
    if (!part->adapter() || part->merged() || updates[i].a.defined()) continue;
    out[i] = part->adapter()->FromBase(x, out[i], part->weight, part->bias);
  }
  last_fused_ = true;
  return out;
}

}  // namespace peftd::model
