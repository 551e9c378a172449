// AdaLoRA (Zhang et al. 2023), METHODS.md "AdaLoRA": an SVD-shaped update ΔW = s·B·diag(E)·A
// with A (R, in) ~ N(0, 0.02), E (R, 1) = 0, B (out, R) ~ N(0, 0.02) and s = alpha/(R + 1e-5)
// fixed at init_r for the adapter's whole life, also after pruning. The rank allocator
// (rank_allocator.h) zeroes entries of E; `keep` records which triplets survive for export.
#ifndef PEFTD_ADAPTERS_ADALORA_H_
#define PEFTD_ADAPTERS_ADALORA_H_

#include <vector>

#include "adapters/linear.h"

namespace peftd::adapters {

struct AdaLoraOptions {
  int64_t init_r = 12;
  double alpha = 32;
  double dropout = 0;
};

class AdaLoraAdapter : public Adapter {
 public:
  AdaLoraAdapter(const LinearImpl& base, const AdaLoraOptions& options);

  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) override;
  torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                      const torch::Tensor& weight, const torch::Tensor& bias) override;
  // (A ⊙ E, B, s) unless dropout is on in training.
  std::optional<LowRankUpdate> LowRank() override;
  std::string Method() const override { return "adalora"; }
  // Keys "lora_A" (k, in), "lora_E" (k, 1), "lora_B" (out, k): only the k kept triplets when a
  // rank pattern exists (PEFT's resize_state_dict_by_rank_pattern).
  std::map<std::string, torch::Tensor> ExportTensors() const override;
  // Accepts full-size tensors, or truncated ones after SetKeep() with the saved pattern.
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) override;
  std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                 const torch::Tensor& bias) const override;
  std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                   const torch::Tensor& bias) const override;
  int64_t NumTrainable() const override;
  // False once the allocator's mask keeps no triplet (the token gate then leaves it out).
  bool IsActive() const override { return Rank() > 0; }

  // Triplets kept (all R until the allocator masks). Sets E to 0 where keep is false.
  void SetKeep(const std::vector<bool>& keep);
  const std::vector<bool>& keep() const { return keep_; }
  // Triplets the keep mask keeps: the module's rank as the allocator decided it. Not the count
  // of E ≠ 0, which is 0 before the first step and overstates a pruned module between maskings
  // (delta_t > 1), when the optimizer regrows the entries the last mask zeroed.
  int64_t Rank() const;
  // ‖A·Aᵀ − I‖_F and ‖Bᵀ·B − I‖_F (METHODS.md: plain, not squared, Frobenius norms).
  std::pair<torch::Tensor, torch::Tensor> OrthogonalityResiduals() const;

  const AdaLoraOptions& options() const { return options_; }
  double scale() const { return scale_; }
  torch::Tensor lora_A;  // (R, in)
  torch::Tensor lora_E;  // (R, 1)
  torch::Tensor lora_B;  // (out, R)

 private:
  torch::Tensor DeltaWeight() const;
  AdaLoraOptions options_;
  double scale_;
  std::vector<bool> keep_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_ADALORA_H_
