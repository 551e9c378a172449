// Writing a model's tensors the way save_pretrained does: model.safetensors, or shards
// model-0000k-of-0000n.safetensors with model.safetensors.index.json.
#ifndef PEFTD_WORKER_MODEL_CHECKPOINT_WRITER_H_
#define PEFTD_WORKER_MODEL_CHECKPOINT_WRITER_H_

#include <torch/torch.h>

#include <map>
#include <string>

#include "absl/status/status.h"

namespace peftd::model {

// Tensors are distributed over `shards` files round-robin in name order (`shards` <= 1: one file).
absl::Status WriteCheckpointTensors(const std::string& dir,
                                    const std::map<std::string, torch::Tensor>& tensors,
                                    int shards);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_CHECKPOINT_WRITER_H_
