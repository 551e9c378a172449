// Several frozen projections of the same input computed as one GEMM: q, k and v of attention,
// gate and up of the MLP. Their weights are concatenated once into one (Σ out, in) buffer and
// each Linear's `weight` (and `bias`) becomes a view of its rows, so memory does not double and
// everything that reads or writes a base weight by name (loading with copy_, merged export,
// Merge, DoRA's norm) still sees and changes the same numbers.
//
// Adapters stay per projection: a LoRA or AdaLoRA update goes into the fused node
// (adapters::FusedLinear), any other method that works from the base output (DoRA, the token
// gate) gets its slice of the fused output (Adapter::FromBase). When a projection's method needs a
// GEMM of its own (HUT, AdaDHP), the group runs projection by projection.
#ifndef PEFTD_WORKER_MODEL_FUSED_PROJECTION_H_
#define PEFTD_WORKER_MODEL_FUSED_PROJECTION_H_

#include <torch/torch.h>

#include <vector>

#include "adapters/linear.h"

namespace peftd::model {

class FusedProjection {
 public:
  FusedProjection() = default;
  // `parts` share their input; their weights become views of the concatenation.
  explicit FusedProjection(std::vector<adapters::Linear> parts);

  // One output per part, each what part->forward(x) returns.
  std::vector<torch::Tensor> Forward(const torch::Tensor& x);

  // Off: every part runs on its own (the reference of the tests).
  void set_enabled(bool enabled) { enabled_ = enabled; }
  // Whether the last Forward ran as one GEMM.
  bool last_fused() const { return last_fused_; }

 private:
  // True when every part's weight (and bias) is still the view of the concatenation made by
  // Concatenate: a module moved to another dtype or device, or a weight assigned anew, breaks it.
  bool Aliased() const;
  // (Re)builds the concatenation from the parts' current weights; leaves it undefined when the
  // parts cannot share one (mixed bias, dtype or device).
  void Concatenate();

  std::vector<adapters::Linear> parts_;
  std::vector<int64_t> outs_;
  torch::Tensor weight_, bias_;
  bool enabled_ = true;
  bool last_fused_ = false;
};

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_FUSED_PROJECTION_H_
