// Named tensors in one safetensors file plus string metadata: the unit checkpoints are made of.
#ifndef PEFTD_WORKER_TRAIN_TENSOR_FILE_H_
#define PEFTD_WORKER_TRAIN_TENSOR_FILE_H_

#include <torch/torch.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace peftd::train {

struct TensorFile {
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Writes atomically (temp file, fsync, rename). Tensors are copied to contiguous CPU memory.
absl::Status WriteTensorFile(const std::string& path, const TensorFile& file);
// Reads every tensor into CPU memory with its stored dtype.
absl::StatusOr<TensorFile> ReadTensorFile(const std::string& path);

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_TENSOR_FILE_H_
