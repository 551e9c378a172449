#include "adapters/lora.h"

#include <cmath>

#include "adapters/linear_ops.h"
#include "adapters/tensor_check.h"

namespace peftd::adapters {

namespace F = torch::nn::functional;

double LoraScale(const LoraOptions& options) {
  const double r = static_cast<double>(options.r);
  return options.use_rslora ? options.alpha / std::sqrt(r) : options.alpha / r;
}

LoraAdapter::LoraAdapter(const LinearImpl& base, const LoraOptions& options)
    : options_(options), scale_(LoraScale(options)) {
  const auto opts = base.weight.options().requires_grad(false);
  torch::Tensor a = torch::empty({options.r, base.in_features()}, opts);
  {
    torch::NoGradGuard no_grad;
    if (options.gaussian_init) {
      a.normal_(0.0, 1.0 / static_cast<double>(options.r));
    } else {
      // kaiming_uniform_(a=√5): bound = √(1/3)·√(3/in) = 1/√in (METHODS.md, LoRA init).
      torch::nn::init::kaiming_uniform_(a, std::sqrt(5.0));
    }
  }
  lora_A = register_parameter("lora_A", a);
  lora_B = register_parameter("lora_B", torch::zeros({base.out_features(), options.r}, opts));
}

torch::Tensor LoraAdapter::Down(const torch::Tensor& x2d) {
  torch::Tensor in = x2d;
  if (options_.dropout > 0 && is_training())
    in = F::dropout(x2d, F::DropoutFuncOptions().p(options_.dropout).training(true));
  return F::linear(in, lora_A);
}

torch::Tensor LoraAdapter::Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                   const torch::Tensor& bias) {
  // Without dropout the whole projection is one autograd node (adapters/linear_ops.h).
  if (!(options_.dropout > 0 && is_training())) {
    return LoraLinear(x, weight, bias, lora_A, lora_B, scale_);
  }
  const auto out_shape = OutputShape(x, weight.size(0));
  torch::Tensor x2d = x.reshape({-1, x.size(-1)});
  // h = base + t·Bᵀ accumulated into the base GEMM's output: one (N, out) buffer, no extra pass.
  torch::Tensor h = FrozenLinear(x2d, weight, bias);
  // s folded into the accumulating GEMM: one kernel less each way than scaling t.
  h.addmm_(Down(x2d), lora_B.t(), /*beta=*/1, /*alpha=*/scale_);
  return h.view(out_shape);
}

torch::Tensor LoraAdapter::Delta(const torch::Tensor& x, const torch::Tensor& base,
                                 const torch::Tensor& weight, const torch::Tensor& bias) {
  if (auto update = LowRank()) return LowRankDelta(x, update->a, update->b, update->scale);
  torch::Tensor x2d = x.reshape({-1, x.size(-1)});
  // Scaling the (N, r) product is the cheapest place for s.
  return F::linear(Down(x2d).mul_(scale_), lora_B).view(OutputShape(x, weight.size(0)));
}

std::optional<LowRankUpdate> LoraAdapter::LowRank() {
  if (options_.dropout > 0 && is_training()) return std::nullopt;
  return LowRankUpdate{lora_A, lora_B, scale_};
}

std::map<std::string, torch::Tensor> LoraAdapter::ExportTensors() const {
  return {{"lora_A.weight", ExportCopy(lora_A)}, {"lora_B.weight", ExportCopy(lora_B)}};
}

absl::Status LoraAdapter::ImportTensors(const std::map<std::string, torch::Tensor>& tensors) {
  RETURN_IF_ERROR(ImportInto(tensors, "lora_A.weight", lora_A));
  return ImportInto(tensors, "lora_B.weight", lora_B);
}

torch::Tensor LoraAdapter::DeltaWeight() const {
  return torch::matmul(lora_B, lora_A).mul_(scale_);
}

std::pair<torch::Tensor, torch::Tensor> LoraAdapter::Merged(const torch::Tensor& weight,
                                                            const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  return {weight + DeltaWeight(), bias};
}

std::pair<torch::Tensor, torch::Tensor> LoraAdapter::Unmerged(const torch::Tensor& weight,
                                                              const torch::Tensor& bias) const {
  torch::NoGradGuard no_grad;
  return {weight - DeltaWeight(), bias};
}

int64_t LoraAdapter::NumTrainable() const { return lora_A.numel() + lora_B.numel(); }

}  // namespace peftd::adapters
