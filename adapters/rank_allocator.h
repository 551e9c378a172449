// AdaLoRA's rank allocator (METHODS.md "AdaLoRA", HF PEFT's RankAllocator): element importance
// EMAs after every optimizer step, triplet scores, the cubic budget schedule and masking of E.
#ifndef PEFTD_ADAPTERS_RANK_ALLOCATOR_H_
#define PEFTD_ADAPTERS_RANK_ALLOCATOR_H_

#include <array>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/adalora.h"

namespace peftd::adapters {

struct AdaLoraSchedule {
  int64_t init_r = 12;
  int64_t target_r = 8;
  int64_t tinit = 0;
  int64_t tfinal = 0;
  int64_t delta_t = 1;
  int64_t total_step = 0;  // T: optimizer steps of the whole run
  double beta1 = 0.85;
  double beta2 = 0.85;
  double orth_reg_weight = 0.5;
};

// InvalidArgument naming the field when the schedule cannot work (METHODS.md: tinit < T − tfinal).
absl::Status ValidateSchedule(const AdaLoraSchedule& schedule);

struct Budget {
  int64_t budget;
  bool mask;  // whether this step masks
};
// PEFT's budget_schedule(global_step) for `num_modules` adapted modules. `global_step` counts as
// PEFT's training loops do: 0 after the first optimizer step (docs/methods.md, "AdaLoRA").
Budget BudgetAt(const AdaLoraSchedule& schedule, int64_t num_modules, int64_t global_step);

class RankAllocator {
 public:
  // `modules` are not owned and must outlive the allocator.
  RankAllocator(AdaLoraSchedule schedule,
                std::vector<std::pair<std::string, AdaLoraAdapter*>> modules);

  // PEFT's AdaLoraModel.update_and_allocate(global_step): called once per optimizer step, after
  // the AdamW step and before gradients are zeroed, with global_step = optimizer steps done − 1.
  // While global_step < T − tfinal it updates importance, then masks when the schedule says so;
  // at global_step == T − tfinal it masks to target_bgt with the importance as it stands (no
  // update that step) and freezes the pattern; after that it re-applies the frozen pattern.
  void Step(int64_t global_step);

  // orth_reg_weight · mean over all A's and B's of ‖P − I‖_F.
  torch::Tensor OrthogonalityPenalty() const;

  // Module name -> keep mask, as exported in "rank_pattern".
  std::map<std::string, std::vector<bool>> RankPattern() const;
  // Module name -> triplets the keep mask keeps (not E ≠ 0: E is 0 at init and masked entries
  // regrow between maskings).
  std::map<std::string, int64_t> Ranks() const;
  bool frozen() const { return frozen_; }

  // Masks E to `budget` triplets by score (k ≤ 0 masks nothing). Exposed for tests.
  void MaskToBudget(int64_t budget);
  // Triplet scores S[m, i] of every module. Exposed for tests.
  std::vector<torch::Tensor> TripletScores() const;

  std::map<std::string, torch::Tensor> StateDict() const;
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

 private:
  struct Ema {
    torch::Tensor ipt, unc;  // Ī and Ū, element-wise
  };
  void UpdateImportance();
  // TripletScores in double on the host, one list per module.
  std::vector<std::vector<double>> ScoreLists() const;
  torch::Tensor Score(const Ema& ema) const { return ema.ipt * ema.unc; }

  AdaLoraSchedule schedule_;
  std::vector<std::pair<std::string, AdaLoraAdapter*>> modules_;
  std::vector<std::array<Ema, 3>> emas_;  // per module: A, E, B
  bool frozen_ = false;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_RANK_ALLOCATOR_H_
