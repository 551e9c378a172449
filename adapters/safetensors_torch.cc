#include "adapters/safetensors_torch.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace peftd::adapters {

using safetensors::Dtype;

absl::StatusOr<torch::ScalarType> ToScalarType(Dtype dtype) {
  switch (dtype) {
    case Dtype::kF64:
      return torch::kFloat64;
    case Dtype::kF32:
      return torch::kFloat32;
    case Dtype::kF16:
      return torch::kFloat16;
    case Dtype::kBF16:
      return torch::kBFloat16;
    case Dtype::kI64:
      return torch::kInt64;
    case Dtype::kI32:
      return torch::kInt32;
    case Dtype::kI16:
      return torch::kInt16;
    case Dtype::kI8:
      return torch::kInt8;
    case Dtype::kU8:
      return torch::kUInt8;
    case Dtype::kBool:
      return torch::kBool;
  }
  return absl::InvalidArgumentError("unknown safetensors dtype");
}

absl::StatusOr<Dtype> ToDtype(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat64:
      return Dtype::kF64;
    case torch::kFloat32:
      return Dtype::kF32;
    case torch::kFloat16:
      return Dtype::kF16;
    case torch::kBFloat16:
      return Dtype::kBF16;
    case torch::kInt64:
      return Dtype::kI64;
    case torch::kInt32:
      return Dtype::kI32;
    case torch::kInt16:
      return Dtype::kI16;
    case torch::kInt8:
      return Dtype::kI8;
    case torch::kUInt8:
      return Dtype::kU8;
    case torch::kBool:
      return Dtype::kBool;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", c10::toString(type), " has no safetensors equivalent"));
  }
}

absl::StatusOr<torch::Tensor> ToTensor(const safetensors::TensorView& view,
                                       std::optional<torch::ScalarType> as) {
  ASSIGN_OR_RETURN(torch::ScalarType type, ToScalarType(view.dtype));
  torch::Tensor out = torch::empty(view.shape, torch::TensorOptions().dtype(type));
  if (view.size_bytes > 0) std::memcpy(out.data_ptr(), view.data, view.size_bytes);
  if (as && *as != type) out = out.to(*as);
  return out;
}

absl::Status SaveTensors(const std::string& path,
                         const std::map<std::string, torch::Tensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;  // contiguous CPU copies alive until written
  keep.reserve(tensors.size());
  std::map<std::string, safetensors::TensorToWrite> out;
  for (const auto& [name, t] : tensors) {
    if (!t.defined())
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is undefined"));
    ASSIGN_OR_RETURN(Dtype dtype, ToDtype(t.scalar_type()));
    keep.push_back(t.detach().to(torch::kCPU).contiguous());
    const torch::Tensor& c = keep.back();
    out[name] = {dtype, c.sizes().vec(), c.data_ptr(), static_cast<size_t>(c.nbytes())};
  }
  return safetensors::Write(path, out, metadata);
}

absl::StatusOr<std::map<std::string, torch::Tensor>> LoadTensors(
    const std::string& path, std::map<std::string, std::string>* metadata) {
  ASSIGN_OR_RETURN(safetensors::File file, safetensors::File::Open(path));
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : file.names()) {
    ASSIGN_OR_RETURN(safetensors::TensorView view, file.Get(name));
    ASSIGN_OR_RETURN(out[name], ToTensor(view));
  }
  if (metadata) *metadata = file.metadata();
  return out;
}

}  // namespace peftd::adapters
