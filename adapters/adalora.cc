#include "adapters/adalora.h"

#include "absl/strings/str_cat.h"
#include "adapters/cpu_gemm.h"
#include "adapters/linear_ops.h"
#include "adapters/tensor_check.h"

namespace peftd::adapters {

namespace F = torch::nn::functional;

AdaLoraAdapter::AdaLoraAdapter(const LinearImpl& base, const AdaLoraOptions& options)
    : options_(options),
      scale_(options.alpha / (static_cast<double>(options.init_r) + 1e-5)),
      keep_(options.init_r, true) {
  const auto opts = base.weight.options().requires_grad(false);
  const int64_t r = options.init_r;
  torch::Tensor a = torch::empty({r, base.in_features()}, opts);
  torch::Tensor b = torch::empty({base.out_features(), r}, opts);
  {
    torch::NoGradGuard no_grad;
    a.normal_(0.0, 0.02);
    b.normal_(0.0, 0.02);
  }
  lora_A = register_parameter("lora_A", a);
  lora_E = register_parameter("lora_E", torch::zeros({r, 1}, opts));
  lora_B = register_parameter("lora_B", b);
}

torch::Tensor AdaLoraAdapter::Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                      const torch::Tensor& bias) {
  // Without dropout: LoRA's one-node projection with A ⊙ E as A.
  if (auto update = LowRank()) {
    return LoraLinear(x, weight, bias, update->a, update->b, update->scale);
  }
  const auto out_shape = OutputShape(x, weight.size(0));
  torch::Tensor x2d = x.reshape({-1, x.size(-1)});
  torch::Tensor h = FrozenLinear(x2d, weight, bias);
  torch::Tensor in = F::dropout(x2d, F::DropoutFuncOptions().p(options_.dropout).training(true));
  h.addmm_(F::linear(in, lora_A * lora_E).mul_(scale_), lora_B.t());
  return h.view(out_shape);
}

std::optional<LowRankUpdate> AdaLoraAdapter::LowRank() {
  if (options_.dropout > 0 && is_training()) return std::nullopt;
  return LowRankUpdate{lora_A * lora_E, lora_B, scale_};
}

torch::Tensor AdaLoraAdapter::Delta(const torch::Tensor& x, const torch::Tensor& base,
                                    const torch::Tensor& weight, const torch::Tensor& bias) {
  if (auto update = LowRank()) return LowRankDelta(x, update->a, update->b, update->scale);
  torch::Tensor x2d = x.reshape({-1, x.size(-1)});
  torch::Tensor in = F::dropout(x2d, F::DropoutFuncOptions().p(options_.dropout).training(true));
  torch::Tensor t = F::linear(in, lora_A * lora_E).mul_(scale_);
  return F::linear(t, lora_B).view(OutputShape(x, weight.size(0)));
}

void AdaLoraAdapter::SetKeep(const std::vector<bool>& keep) {
  keep_ = keep;
  torch::NoGradGuard no_grad;
  // Runs every step once the pattern is final: on the CPU through E's data, not a select and a
  // zero_ per pruned triplet.
  if (GemmCovers(lora_E) && lora_E.is_contiguous()) {
    AT_DISPATCH_FLOATING_TYPES(lora_E.scalar_type(), "adalora_set_keep", [&] {
      scalar_t* e = lora_E.data_ptr<scalar_t>();
      for (size_t i = 0; i < keep_.size(); ++i) {
        if (!keep_[i]) e[i] = 0;
      }
    });
    lora_E.unsafeGetTensorImpl()->bump_version();
    return;
  }
  for (size_t i = 0; i < keep_.size(); ++i) {
    if (!keep_[i]) lora_E[static_cast<int64_t>(i)].zero_();
  }
}

int64_t AdaLoraAdapter::Rank() const {
  int64_t kept = 0;
  for (bool k : keep_) kept += k ? 1 : 0;
  return kept;
}

std::pair<torch::Tensor, torch::Tensor> AdaLoraAdapter::OrthogonalityResiduals() const {
  const int64_t r = lora_A.size(0);
  torch::Tensor eye = torch::eye(r, lora_A.options().requires_grad(false));
  torch::Tensor pa = lora_A.matmul(lora_A.t());
  torch::Tensor pb = lora_B.t().matmul(lora_B);
  return {(pa - eye).norm(), (pb - eye).norm()};
}

torch::Tensor AdaLoraAdapter::DeltaWeight() const {
  return lora_B.matmul(lora_A * lora_E).mul_(scale_);
}

std::map<std::string, torch::Tensor> AdaLoraAdapter::ExportTensors() const {
  std::vector<int64_t> kept;
  for (size_t i = 0; i < keep_.size(); ++i) {
    if (keep_[i]) kept.push_back(static_cast<int64_t>(i));
  }
  if (static_cast<int64_t>(kept.size()) == lora_A.size(0)) {
    return {{"lora_A", ExportCopy(lora_A)},
            {"lora_E", ExportCopy(lora_E)},
            {"lora_B", ExportCopy(lora_B)}};
  }
  torch::Tensor idx = torch::tensor(kept, torch::kLong).to(lora_A.device());
  return {{"lora_A", ExportCopy(lora_A.index_select(0, idx))},
          {"lora_E", ExportCopy(lora_E.index_select(0, idx))},
          {"lora_B", ExportCopy(lora_B.index_select(1, idx))}};
}

absl::Status AdaLoraAdapter::ImportTensors(const std::map<std::string, torch::Tensor>& tensors) {
  std::vector<int64_t> kept;
  for (size_t i = 0; i < keep_.size(); ++i) {
    if (keep_[i]) kept.push_back(static_cast<int64_t>(i));
  }
  if (static_cast<int64_t>(kept.size()) == lora_A.size(0)) {
    RETURN_IF_ERROR(ImportInto(tensors, "lora_A", lora_A));
    RETURN_IF_ERROR(ImportInto(tensors, "lora_E", lora_E));
    return ImportInto(tensors, "lora_B", lora_B);
  }
  // Truncated by the rank pattern: scatter the kept triplets back, zeros elsewhere.
  const int64_t k = static_cast<int64_t>(kept.size());
  torch::Tensor a = torch::zeros({k, lora_A.size(1)}, lora_A.options());
  torch::Tensor e = torch::zeros({k, 1}, lora_E.options());
  torch::Tensor b = torch::zeros({lora_B.size(0), k}, lora_B.options());
  RETURN_IF_ERROR(ImportInto(tensors, "lora_A", a));
  RETURN_IF_ERROR(ImportInto(tensors, "lora_E", e));
  RETURN_IF_ERROR(ImportInto(tensors, "lora_B", b));
  torch::NoGradGuard no_grad;
  torch::Tensor idx = torch::tensor(kept, torch::kLong).to(lora_A.device());
  lora_A.zero_().index_copy_(0, idx, a);
  lora_E.zero_().index_copy_(0, idx, e);
  lora_B.zero_().index_copy_(1, idx, b);
  return absl::OkStatus();
}

std::pair<torch::Tensor, torch::Tensor> AdaLoraAdapter::Merged(const torch::Tensor& weight,
                                                               const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  return {weight + DeltaWeight(), bias};
}

std::pair<torch::Tensor, torch::Tensor> AdaLoraAdapter::Unmerged(const torch::Tensor& weight,
                                                                 const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  return {weight - DeltaWeight(), bias};
}

int64_t AdaLoraAdapter::NumTrainable() const {
  return lora_A.numel() + lora_E.numel() + lora_B.numel();
}

}  // namespace peftd::adapters
