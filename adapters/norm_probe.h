// The statistics behind the paper's norm criteria for module selection (TS-PEFT §5; JobSpec
// selection NORM_RELATIVE and NORM_ABS): per adapted module, the mean over training tokens of
//   ‖M(x)_i‖ / max(‖(W0 x + b)_i‖, 1e-12)   and of   ‖M(x)_i‖,
// where M(x) is the method's change (under the token gate, the change the gate thresholds) and
// W0 x + b the frozen projection's output, one row norm per token, padding excluded.
//
// Computing them needs W0 x and M(x) apart, which a method's fused Forward never materializes, so
// the probe runs one extra pass of the module under no_grad, with dropout off (it draws no random
// numbers: a probed run trains exactly as an unprobed one). It runs on the first training forward
// of each arming: PeftModel arms the probes for the first step of an attempt and after every
// kEverySteps-th optimizer step, so the cost is one extra module forward per micro-batch in ten.
#ifndef PEFTD_ADAPTERS_NORM_PROBE_H_
#define PEFTD_ADAPTERS_NORM_PROBE_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "adapters/linear.h"
#include "adapters/token_gate.h"

namespace peftd::adapters {

// Shared by every probe of a model. `arming` counts the armings; a probe observes one forward per
// arming. `tokens` says which tokens of the current batch are real (the gates' context).
struct NormProbeContext {
  static constexpr int64_t kEverySteps = 10;
  int64_t arming = 1;  // armed for the first training forward
  std::shared_ptr<GateContext> tokens;
};

class NormProbe {
 public:
  // `method` is the adapter's own method (not the gate around it); not owned: the Linear that
  // holds it holds this probe too, and drops the probe when it drops the method.
  NormProbe(Adapter* method, std::shared_ptr<const NormProbeContext> context);

  // True for a training forward (module in training mode, grad on) of an arming not yet observed.
  bool Due(bool training) const;
  // Adds the rows of x (..., in) to the means: base = x·W0ᵀ + b and M(x) = method.Delta, under
  // no_grad with the method in eval mode. Rows whose token mask entry is 0 are left out; when the
  // mask does not cover x's rows (an lm_head on selected positions), every row counts.
  void Observe(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

  struct Means {
    double relative = 0;  // mean ‖M(x)_i‖ / max(‖base_i‖, 1e-12)
    double absolute = 0;  // mean ‖M(x)_i‖
    int64_t tokens = 0;
  };
  Means Read() const;

  // (3) double: Σ relative, Σ absolute, tokens; checkpointed so a resumed job keeps its means.
  torch::Tensor State() const;
  absl::Status LoadState(const torch::Tensor& state);

 private:
  Adapter* method_;
  std::shared_ptr<const NormProbeContext> context_;
  int64_t observed_arming_ = 0;
  double sum_relative_ = 0, sum_absolute_ = 0;
  int64_t tokens_ = 0;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_NORM_PROBE_H_
