// AdaDHP's adaptive module selection (METHODS.md "AdaDHP"): element importance EMAs over every
// module's l and r (as AdaLoRA's, β1 = β2 = 0.85), module score = mean of its in + out element
// scores, and a cubic schedule over the number of adapted modules. Pruned modules are reset to
// exactly 1 and frozen for good.
#ifndef PEFTD_ADAPTERS_ADADHP_SELECTOR_H_
#define PEFTD_ADAPTERS_ADADHP_SELECTOR_H_

#include <array>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "adapters/adadhp.h"

namespace peftd::adapters {

struct AdaDhpSchedule {
  int64_t target_num = 0;  // N_tgt, modules kept
  int64_t tinit = 0;
  int64_t tfinal = 0;  // absolute step where the budget reaches N_tgt
  int64_t delta_t = 10;
  double beta1 = 0.85;
  double beta2 = 0.85;
};

absl::Status ValidateSchedule(const AdaDhpSchedule& schedule, int64_t num_modules);

// Modules allowed to stay active at 1-based step t, and whether t is a pruning step.
struct ModuleBudget {
  int64_t budget;
  bool prune;
};
ModuleBudget ModuleBudgetAt(const AdaDhpSchedule& schedule, int64_t num_modules, int64_t t);

class AdaDhpSelector {
 public:
  // `modules` are not owned and must outlive the selector.
  AdaDhpSelector(AdaDhpSchedule schedule,
                 std::vector<std::pair<std::string, AdaDhpAdapter*>> modules);

  // Once per optimizer step, after the AdamW step and before gradients are zeroed (1-based t).
  void Step(int64_t t);

  int64_t ActiveModules() const;
  // Module scores (mean of Ī·Ū over l and r); frozen modules score +∞ never matter.
  std::vector<double> ModuleScores() const;
  // Prunes the lowest-scoring active modules down to `budget`. Exposed for tests.
  void PruneTo(int64_t budget);

  std::map<std::string, torch::Tensor> StateDict() const;
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

 private:
  struct Ema {
    torch::Tensor ipt, unc;
  };
  AdaDhpSchedule schedule_;
  std::vector<std::pair<std::string, AdaDhpAdapter*>> modules_;
  std::vector<std::array<Ema, 2>> emas_;  // l, r
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_ADADHP_SELECTOR_H_
