// AdaDHP's module (METHODS.md "AdaDHP"): two vectors, l (in) and r (out), both initialised to 1:
//   h = ((x ⊙ l)·W0ᵀ) ⊙ r + b0     (the bias is not scaled).
// Freeze() is what module selection calls on a pruned module: l and r return to exactly 1 and
// never train again, so the layer is plain W0.
#ifndef PEFTD_ADAPTERS_ADADHP_H_
#define PEFTD_ADAPTERS_ADADHP_H_

#include "adapters/linear.h"

namespace peftd::adapters {

class AdaDhpAdapter : public Adapter {
 public:
  explicit AdaDhpAdapter(const LinearImpl& base);

  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) override;
  torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                      const torch::Tensor& weight, const torch::Tensor& bias) override;
  // Scaling the input (x ⊙ l) needs a GEMM of its own, unless frozen (the base layer exactly).
  bool UsesBase() const override { return frozen_; }
  torch::Tensor FromBase(const torch::Tensor& x, const torch::Tensor& base,
                         const torch::Tensor& weight, const torch::Tensor& bias) override {
    return frozen_ ? base : Forward(x, weight, bias);
  }
  std::string Method() const override { return "adadhp"; }
  std::map<std::string, torch::Tensor> ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) override;
  std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                 const torch::Tensor& bias) const override;
  std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                   const torch::Tensor& bias) const override;
  int64_t NumTrainable() const override;

  // Resets l and r to exactly 1, drops their gradients and stops them training. Irreversible.
  void Freeze();
  bool frozen() const { return frozen_; }
  bool IsActive() const override { return !frozen_; }

  torch::Tensor adadhp_l;  // (in)
  torch::Tensor adadhp_r;  // (out)

 private:
  // (out) zeros standing for a missing bias, made once: a new tensor per forward is an allocation
  // and a kernel per module and step.
  const torch::Tensor& ZeroBias(const torch::Tensor& weight);

  bool frozen_ = false;
  torch::Tensor zero_bias_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_ADADHP_H_
