// DoRA, METHODS.md "DoRA": LoRA plus a magnitude vector m (out), initialised to the row norms of
// W0. With n = stopgrad(‖W0 + s·stopgrad(B·A)‖_row) clamped away from 0 [ours] and g = m/n:
//   M(x) = (g − 1) ⊙ (x̃·W0ᵀ) + g ⊙ (s·x̃·Aᵀ·Bᵀ),   x̃ = drop(x).
// Without dropout x̃·W0ᵀ is base − b0 and is reused rather than recomputed.
#ifndef PEFTD_ADAPTERS_DORA_H_
#define PEFTD_ADAPTERS_DORA_H_

#include "adapters/lora.h"

namespace peftd::adapters {

// Smallest row norm DoRA divides by [ours]: PEFT gives NaN for a zero row.
inline constexpr double kDoraMinNorm = 1e-12;

class DoraAdapter : public LoraAdapter {
 public:
  DoraAdapter(const LinearImpl& base, const LoraOptions& options);

  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) override;
  torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                      const torch::Tensor& weight, const torch::Tensor& bias) override;
  torch::Tensor FromBase(const torch::Tensor& x, const torch::Tensor& base,
                         const torch::Tensor& weight, const torch::Tensor& bias) override;
  // DoRA rescales the base output: never a plain low-rank update.
  std::optional<LowRankUpdate> LowRank() override { return std::nullopt; }
  std::string Method() const override { return "dora"; }
  std::map<std::string, torch::Tensor> ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) override;
  std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                 const torch::Tensor& bias) const override;
  std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                   const torch::Tensor& bias) const override;
  int64_t NumTrainable() const override;

  torch::Tensor magnitude;  // m (out)

 private:
  // g = m / n with n detached (out).
  torch::Tensor Gain(const torch::Tensor& weight) const;
  // g of the last Merged() call: the merged weight alone no longer tells it (its rows have norm m).
  mutable torch::Tensor merged_gain_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_DORA_H_
