// LoRA (Hu et al. 2021), METHODS.md "LoRA":
//   h = x·W0ᵀ + b0 + s·(drop(x)·Aᵀ)·Bᵀ with s = alpha/r (alpha/√r with rsLoRA).
// DoRA (dora.h) builds on it with a magnitude vector.
#ifndef PEFTD_ADAPTERS_LORA_H_
#define PEFTD_ADAPTERS_LORA_H_

#include <torch/torch.h>

#include "adapters/linear.h"

namespace peftd::adapters {

struct LoraOptions {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0;
  bool use_rslora = false;
  bool gaussian_init = false;  // A ~ N(0, 1/r) instead of kaiming-uniform U(±1/√in)
};

double LoraScale(const LoraOptions& options);

class LoraAdapter : public Adapter {
 public:
  // Creates A (r, in) and B (out, r) = 0 with `base`'s dtype and device; the adapter is an exact
  // no-op until B moves.
  LoraAdapter(const LinearImpl& base, const LoraOptions& options);

  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) override;
  torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                      const torch::Tensor& weight, const torch::Tensor& bias) override;
  // (A, B, s) unless dropout is on in training.
  std::optional<LowRankUpdate> LowRank() override;
  std::string Method() const override { return "lora"; }
  std::map<std::string, torch::Tensor> ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) override;
  std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                 const torch::Tensor& bias) const override;
  std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                   const torch::Tensor& bias) const override;
  int64_t NumTrainable() const override;

  const LoraOptions& options() const { return options_; }
  double scale() const { return scale_; }
  torch::Tensor lora_A;  // (r, in)
  torch::Tensor lora_B;  // (out, r)

 protected:
  // drop(x)·Aᵀ as (N, r), with x flattened to (N, in); the scale s is applied by the caller.
  torch::Tensor Down(const torch::Tensor& x2d);
  // s·B·A, the materialised low-rank update (out, in).
  torch::Tensor DeltaWeight() const;

  LoraOptions options_;
  double scale_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_LORA_H_
