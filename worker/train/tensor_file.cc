#include "worker/train/tensor_file.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/safetensors.h"
#include "common/status.h"

namespace peftd::train {

absl::Status WriteTensorFile(const std::string& path, const TensorFile& file) {
  return adapters::SaveTensors(path, file.tensors, file.metadata);
}

absl::StatusOr<TensorFile> ReadTensorFile(const std::string& path) {
  TensorFile out;
  ASSIGN_OR_RETURN(out.tensors, adapters::LoadTensors(path, &out.metadata));
  return out;
}

}  // namespace peftd::train
