// The frozen base Linear that every model projection is built from, and the hook where a
// parameter-efficient method attaches. Models (worker/model) use adapters::Linear for every
// projection that may be adapted; injection (adapters/inject.h) attaches an Adapter by module name.
#ifndef PEFTD_ADAPTERS_LINEAR_H_
#define PEFTD_ADAPTERS_LINEAR_H_

#include <torch/torch.h>

#include <memory>
#include <string>

namespace peftd::adapters {

// The method-specific part of an adapted layer (LoRA, DoRA, ..., or a token gate around one).
class Adapter : public torch::nn::Module {
 public:
  // The adapted layer's output h = base + M(x), computed the method's fastest way.
  // `weight` (out, in) and `bias` (out, or undefined) are the frozen base tensors.
  virtual torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                const torch::Tensor& bias) = 0;
};

// y = x·Wᵀ + b with W and b frozen (requires_grad = false; they never get a gradient or optimizer
// state). Parameter names are HF's ("weight", "bias"), so `model.layers.0.self_attn.q_proj.weight`
// loads straight from a checkpoint. Not thread-safe for concurrent Attach/forward.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
             const torch::TensorOptions& options = torch::TensorOptions());

  torch::Tensor forward(const torch::Tensor& x);

  // Registers `adapter` as the child module `name` (e.g. "lora"); forward then calls it.
  // A Linear holds at most one adapter; attaching a second replaces the first.
  void Attach(std::shared_ptr<Adapter> adapter, const std::string& name);
  void Detach();
  const std::shared_ptr<Adapter>& adapter() const { return adapter_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // (out, in), frozen
  torch::Tensor bias;    // (out) or undefined, frozen

 private:
  int64_t in_features_;
  int64_t out_features_;
  std::shared_ptr<Adapter> adapter_;
  std::string adapter_name_;
};
TORCH_MODULE(Linear);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_LINEAR_H_
