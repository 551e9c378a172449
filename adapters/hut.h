// HUT, Hadamard Updated Transformation (arXiv 2409.13501), METHODS.md "HUT":
//   m_A = mean_r M_A (in), m_B = mean_r M_B (out),
//   h = γ ⊙ ((x ⊙ m_A)·W0ᵀ ⊙ m_B + b0) + β   [ours: γ, β act on the whole output, bias included].
// W_new = diag(γ⊙m_B)·W0·diag(m_A) is never materialised in the forward: scale x, run the
// frozen GEMM, scale and shift the output — O(N·(in + out)) on top of the base layer.
// Init [ours]: M_A = M_B = γ = 1, β = 0, so step 0 is the base model.
#ifndef PEFTD_ADAPTERS_HUT_H_
#define PEFTD_ADAPTERS_HUT_H_

#include "adapters/linear.h"

namespace peftd::adapters {

struct HutOptions {
  int64_t r = 8;
};

class HutAdapter : public Adapter {
 public:
  HutAdapter(const LinearImpl& base, const HutOptions& options);

  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) override;
  torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                      const torch::Tensor& weight, const torch::Tensor& bias) override;
  // HUT scales the input of the base GEMM (x ⊙ m_A): it needs a GEMM of its own.
  bool UsesBase() const override { return false; }
  std::string Method() const override { return "hut"; }
  std::map<std::string, torch::Tensor> ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) override;
  std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                 const torch::Tensor& bias) const override;
  std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                   const torch::Tensor& bias) const override;
  int64_t NumTrainable() const override;

  const HutOptions& options() const { return options_; }
  torch::Tensor hut_A;      // M_A (in, r)
  torch::Tensor hut_B;      // M_B (r, out)
  torch::Tensor hut_gamma;  // γ (out)
  torch::Tensor hut_beta;   // β (out)

 private:
  HutOptions options_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_HUT_H_
