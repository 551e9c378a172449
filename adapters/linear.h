// The frozen base Linear that every model projection is built from, and the hook where a
// parameter-efficient method attaches. Models (worker/model) use adapters::Linear for every
// projection that may be adapted; injection (adapters/inject.h) attaches an Adapter by module name.
#ifndef PEFTD_ADAPTERS_LINEAR_H_
#define PEFTD_ADAPTERS_LINEAR_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "adapters/linear_ops.h"

namespace peftd::adapters {

class NormProbe;

// The method-specific part of an adapted layer (LoRA, DoRA, AdaLoRA, HUT, AdaDHP, or the token gate
// wrapping one of them). Every method is written as h = base + M(x) (METHODS.md).
class Adapter : public torch::nn::Module {
 public:
  // The adapted layer's output h = base + M(x), computed the method's fastest way.
  // `weight` (out, in) and `bias` (out, or undefined) are the frozen base tensors.
  virtual torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                const torch::Tensor& bias) = 0;
  // M(x) given `base` = x·Wᵀ + b already computed (the token gate needs base and M separately).
  virtual torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                              const torch::Tensor& weight, const torch::Tensor& bias) = 0;
  // True when the output follows from the plain base output x·W0ᵀ + b0 (FromBase): then a model
  // may compute the bases of several projections of one input as one GEMM
  // (worker/model/fused_projection.h). False for methods that scale the input (HUT, AdaDHP).
  virtual bool UsesBase() const { return true; }
  // Forward given `base` = x·W0ᵀ + b0; only when UsesBase().
  virtual torch::Tensor FromBase(const torch::Tensor& x, const torch::Tensor& base,
                                 const torch::Tensor& weight, const torch::Tensor& bias) {
    return base + Delta(x, base, weight, bias);
  }
  // The method's update as s·(x·Aᵀ)·Bᵀ when it is exactly that right now (LoRA and AdaLoRA
  // without dropout in training), for the fused projection node; nullopt otherwise.
  virtual std::optional<LowRankUpdate> LowRank() { return std::nullopt; }
  // "lora", "dora", "adalora", "hut" or "adadhp" (the gate reports the method it wraps).
  virtual std::string Method() const = 0;
  // Tensors written to the adapter file, keyed by the suffix after the module path, e.g.
  // "lora_A.weight", "lora_magnitude_vector", "lora_E", "hut_gamma", "adadhp_l" (METHODS.md,
  // "Adapter files"); contiguous fp32 CPU copies.
  virtual std::map<std::string, torch::Tensor> ExportTensors() const = 0;
  // Loads what ExportTensors wrote; InvalidArgument naming the key and both shapes on mismatch.
  virtual absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) = 0;
  // False when the adapter cannot be folded into W0 (gated adapters).
  virtual bool Mergeable() const { return true; }
  // (W, b) of the merged layer from the base (W0, b0); b may be undefined when b0 is and the
  // method leaves the bias alone. The inputs are not modified.
  virtual std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                         const torch::Tensor& bias) const = 0;
  // Inverse of Merged: (W0, b0) from a merged (W, b).
  virtual std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                           const torch::Tensor& bias) const = 0;
  // Trainable parameter count, as METHODS.md gives it per method.
  virtual int64_t NumTrainable() const = 0;
  // False when the adapter currently changes nothing by construction (an AdaLoRA module pruned
  // to rank 0, an AdaDHP module pruned by selection); the token gate leaves such modules out of
  // its sparsity statistics.
  virtual bool IsActive() const { return true; }
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
  // Removes the adapter (unmerging first when merged).
  void Detach();
  const std::shared_ptr<Adapter>& adapter() const { return adapter_; }
  // Records the norm statistics of the adapter's training forwards when due (norm_probe.h);
  // shared with the PeftModel that reads it, nullptr for none. Detach drops it.
  void set_norm_probe(std::shared_ptr<NormProbe> probe) { probe_ = std::move(probe); }
  // Feeds the norm probe the input of a forward computed without forward(): the fused q/k/v and
  // gate/up projections (worker/model/fused_projection.h) run this module's GEMM with others.
  void ObserveInput(const torch::Tensor& x);

  // Folds the adapter into weight (and bias); forward then is the plain linear. FailedPrecondition
  // when there is no adapter, it is already merged, or the adapter cannot be merged (gated).
  absl::Status Merge();
  // Restores W0 (and b0) from the merged weights, up to rounding; the adapter is active again.
  // A bias that Merge() had to add (HUT's β on a bias-free layer) is removed.
  absl::Status Unmerge();
  bool merged() const { return merged_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // (out, in), frozen
  torch::Tensor bias;    // (out) or undefined, frozen

 private:
  int64_t in_features_;
  int64_t out_features_;
  std::shared_ptr<Adapter> adapter_;
  std::string adapter_name_;
  std::shared_ptr<NormProbe> probe_;
  bool merged_ = false;
  bool bias_added_by_merge_ = false;  // the layer had no bias before Merge()
};
TORCH_MODULE(Linear);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_LINEAR_H_
