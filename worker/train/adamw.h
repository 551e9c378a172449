// AdamW (decoupled weight decay, Loshchilov & Hutter) over the trainable tensors only: the frozen
// base holds no optimizer state. Matches torch.optim.AdamW's update order and bias correction, so a
// run is comparable with PyTorch's. Not thread-safe.
//
// The trainable tensors, their gradients and both moments live in four flat buffers (the tensors
// become views of them), so an update, the gradient norm and zeroing are a handful of kernels
// whatever the number of adapted modules: on a small model the per-tensor loop of PyTorch's
// AdamW costs more than the arithmetic. When a tensor stops requiring a gradient (AdaDHP prunes
// a module) the update falls back to going tensor by tensor over the same views.
#ifndef PEFTD_WORKER_TRAIN_ADAMW_H_
#define PEFTD_WORKER_TRAIN_ADAMW_H_

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace peftd::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// A trainable tensor and whether weight decay applies to it (HF Trainer: not to biases and norms).
struct TrainableTensor {
  std::string name;
  torch::Tensor tensor;
  bool decay = true;
};

class AdamW {
 public:
  AdamW(std::vector<TrainableTensor> params, AdamWOptions options);

  // One update with learning rate `lr`. Tensors without a gradient, or that stopped requiring one
  // (AdaDHP-pruned modules), are left untouched, state included.
  void Step(double lr);
  // Zeroes gradients in place (keeps their storage, so accumulation adds into it).
  void ZeroGrad();
  // Global L2 norm of all gradients; scales them to `max_norm` when above it (max_norm > 0).
  // Returns the norm before clipping.
  double ClipGradNorm(double max_norm);
  // The gradients a data-parallel step sums over ranks: the flat gradient buffer when every
  // tensor's gradient is its view, else each gradient of a tensor that still requires one (the
  // same list on every rank: AdaDHP prunes the same modules everywhere).
  std::vector<torch::Tensor> GradientBuffers() const;
  // The flat gradient buffer (undefined unless every tensor shares one dtype and device) and
  // where tensor i's gradient starts in it: the data-parallel gradient buckets are its slices.
  const torch::Tensor& flat_grad() const { return flat_grad_; }
  int64_t flat_offset(size_t i) const { return offsets_.at(i); }
  // True when every tensor that still requires a gradient has it as its view of flat_grad():
  // summing slices of the buffer then sums every gradient the step uses (AdaDHP's pruned
  // tensors have none, and ZeroGrad keeps their slices at zero).
  bool LiveGradientsInFlatBuffer() const;

  int64_t step_count() const { return step_count_; }
  const std::vector<TrainableTensor>& params() const { return params_; }

  // Moments and step count, keyed "<name>.exp_avg", "<name>.exp_avg_sq", "__step__".
  std::map<std::string, torch::Tensor> StateDict() const;
  // Restores what StateDict wrote; InvalidArgument naming the key on a missing or mis-shaped entry.
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

 private:
  // True when every tensor requires a gradient that is still the view of flat_grad_.
  bool FlatPathValid() const;

  std::vector<TrainableTensor> params_;
  // Decayed tensors first, so weight decay is one slice: [0, decayed_numel_).
  torch::Tensor flat_param_, flat_grad_, flat_exp_avg_, flat_exp_avg_sq_;
  int64_t decayed_numel_ = 0;
  std::vector<int64_t> offsets_;  // where each tensor starts in the flat buffers
  bool flat_ = false;             // all tensors share one dtype and device, so the buffers exist
  std::vector<torch::Tensor> exp_avg_;
  std::vector<torch::Tensor> exp_avg_sq_;
  AdamWOptions options_;
  int64_t step_count_ = 0;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_ADAMW_H_
