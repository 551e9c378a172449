#include "adapters/tensor_check.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace peftd::adapters {

std::vector<int64_t> OutputShape(const torch::Tensor& x, int64_t out) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out;
  return shape;
}

torch::Tensor ExportCopy(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat32).contiguous().clone();
}

std::string ShapeString(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes().vec(), ", "), "]");
}

absl::Status ImportInto(const std::map<std::string, torch::Tensor>& tensors, const std::string& key,
                        torch::Tensor& dst) {
  auto it = tensors.find(key);
  if (it == tensors.end())
    return absl::InvalidArgumentError(absl::StrCat("missing tensor '", key, "'"));
  if (!it->second.sizes().equals(dst.sizes())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", key, "' has shape ",
                                                   ShapeString(it->second), ", the model needs ",
                                                   ShapeString(dst)));
  }
  torch::NoGradGuard no_grad;
  dst.copy_(it->second);
  return absl::OkStatus();
}

}  // namespace peftd::adapters
