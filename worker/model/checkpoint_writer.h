// Writing a model's tensors the way save_pretrained does: model.safetensors, or shards
// model-0000k-of-0000n.safetensors with model.safetensors.index.json.
#ifndef PEFTD_WORKER_MODEL_CHECKPOINT_WRITER_H_
#define PEFTD_WORKER_MODEL_CHECKPOINT_WRITER_H_

#include <torch/torch.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace peftd::model {

// Tensors are distributed over `shards` files round-robin in name order (`shards` <= 1: one file).
absl::Status WriteCheckpointTensors(const std::string& dir,
                                    const std::map<std::string, torch::Tensor>& tensors,
                                    int shards);

// The dtype named by a tiny model's --bf16/--fp16 choice: "float32", "bfloat16" or "float16".
absl::StatusOr<torch::Dtype> StoredDtype(const std::string& dtype);

// Creates the model folder `dir` (and its parents).
absl::Status CreateModelFolder(const std::string& dir);

// Writes `text` and a newline to `dir`/`name` (config.json, tokenizer files).
absl::Status WriteModelText(const std::string& dir, const std::string& name,
                            const std::string& text);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_CHECKPOINT_WRITER_H_
