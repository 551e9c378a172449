// Small helpers every adapter uses for shapes, export copies and imports with clear errors.
#ifndef PEFTD_ADAPTERS_TENSOR_CHECK_H_
#define PEFTD_ADAPTERS_TENSOR_CHECK_H_

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/status.h"

namespace peftd::adapters {

// x's shape with the last dimension replaced by `out`.
std::vector<int64_t> OutputShape(const torch::Tensor& x, int64_t out);

// A contiguous fp32 CPU copy for adapter files.
torch::Tensor ExportCopy(const torch::Tensor& t);

// Copies tensors[key] into `dst` (dtype and device of dst); InvalidArgument naming the key and
// both shapes when missing or mis-shaped.
absl::Status ImportInto(const std::map<std::string, torch::Tensor>& tensors, const std::string& key,
                        torch::Tensor& dst);

std::string ShapeString(const torch::Tensor& t);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_TENSOR_CHECK_H_
