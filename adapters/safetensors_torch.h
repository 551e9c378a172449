// The LibTorch side of common/safetensors: tensors in and out of safetensors files.
#ifndef PEFTD_ADAPTERS_SAFETENSORS_TORCH_H_
#define PEFTD_ADAPTERS_SAFETENSORS_TORCH_H_

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace peftd::adapters {

absl::StatusOr<torch::ScalarType> ToScalarType(safetensors::Dtype dtype);
absl::StatusOr<safetensors::Dtype> ToDtype(torch::ScalarType type);

// Copies a view out of its file into a new CPU tensor, converted to `as` when given.
absl::StatusOr<torch::Tensor> ToTensor(const safetensors::TensorView& view,
                                       std::optional<torch::ScalarType> as = std::nullopt);

// Writes `tensors` (any device, any layout; copied to contiguous CPU) atomically to `path`.
absl::Status SaveTensors(const std::string& path,
                         const std::map<std::string, torch::Tensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of `path` into CPU memory; fills `metadata` when given.
absl::StatusOr<std::map<std::string, torch::Tensor>> LoadTensors(
    const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_SAFETENSORS_TORCH_H_
