// Copying a safetensors checkpoint into a model's parameters, for every family's loader: each
// parameter from its key (converted to the parameter's dtype and device one tensor at a time,
// never held twice), the shape checked, and the checkpoint's tensors that no parameter took
// refused by name. A family says only how its names differ from the checkpoint's.
#ifndef PEFTD_WORKER_MODEL_CHECKPOINT_COPY_H_
#define PEFTD_WORKER_MODEL_CHECKPOINT_COPY_H_

#include <torch/torch.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "common/safetensors.h"

namespace peftd::model {

struct CheckpointMapping {
  // The checkpoint key of parameter `name`; unset: the name itself.
  std::function<std::string(const std::string& name)> key;
  // Initialises a parameter the checkpoint lacks (a new classification head) and returns true,
  // or returns false to refuse the checkpoint; unset: every parameter is required.
  std::function<bool(const std::string& name, torch::Tensor& param)> init_missing;
  // Parameters stored transposed, (in, out) (GPT-2's Conv1D); unset: none.
  std::function<bool(const std::string& name)> transposed;
  // Checkpoint tensors the model does not use (buffers, other heads, tied copies); unset: none.
  std::function<bool(const std::string& key)> ignored;
};

// Copies `files` into the base parameters of `model` (adapter parameters are left alone) under
// NoGradGuard, as `mapping` says.
absl::Status CopyCheckpoint(torch::nn::Module& model, const safetensors::ShardedFiles& files,
                            const CheckpointMapping& mapping);

// The checkpoint key of `name`: itself, or without `prefix` in a checkpoint saved from the bare
// model class (GPT2Model, RobertaModel) when only that key is there.
std::string KeyWithOrWithoutPrefix(const safetensors::ShardedFiles& files, const std::string& name,
                                   const std::string& prefix);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_CHECKPOINT_COPY_H_
