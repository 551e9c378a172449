#include "worker/train/adamw.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace peftd::train {

AdamW::AdamW(std::vector<TrainableTensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  torch::NoGradGuard no_grad;
  flat_ = !params_.empty();
  int64_t total = 0;
  for (const auto& p : params_) {
    flat_ = flat_ && p.tensor.options().dtype() == params_[0].tensor.options().dtype() &&
            p.tensor.device() == params_[0].tensor.device();
    total += p.tensor.numel();
    if (p.decay) decayed_numel_ += p.tensor.numel();
  }
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
  if (!flat_) {
    for (size_t i = 0; i < params_.size(); ++i) {
      exp_avg_[i] = torch::zeros_like(params_[i].tensor, torch::MemoryFormat::Contiguous);
      exp_avg_sq_[i] = torch::zeros_like(params_[i].tensor, torch::MemoryFormat::Contiguous);
    }
    return;
  }
  const auto opts = params_[0].tensor.options().requires_grad(false);
  flat_param_ = torch::empty({total}, opts);
  flat_grad_ = torch::zeros({total}, opts);
  flat_exp_avg_ = torch::zeros({total}, opts);
  flat_exp_avg_sq_ = torch::zeros({total}, opts);
  offsets_.reserve(params_.size());
  int64_t decayed_offset = 0, other_offset = decayed_numel_;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].tensor;
    int64_t& offset = params_[i].decay ? decayed_offset : other_offset;
    offsets_.push_back(offset);
    const int64_t n = p.numel();
    auto view = [&](const torch::Tensor& flat) {
      return flat.narrow(0, offset, n).view(p.sizes());
    };
    torch::Tensor param_view = view(flat_param_);
    param_view.copy_(p);
    if (p.grad().defined()) view(flat_grad_).copy_(p.grad());
    p.set_data(param_view);  // same tensor (adapters keep their handles), flat storage
    p.mutable_grad() = view(flat_grad_);
    exp_avg_[i] = view(flat_exp_avg_);
    exp_avg_sq_[i] = view(flat_exp_avg_sq_);
    offset += n;
  }
}

bool AdamW::FlatPathValid() const {
  if (!flat_) return false;
  const int64_t elem = flat_grad_.element_size();
  const char* base = static_cast<const char*>(flat_grad_.data_ptr());
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i].tensor;
    const torch::Tensor& grad = p.grad();
    if (!p.requires_grad() || !grad.defined() || grad.data_ptr() != base + offsets_[i] * elem) {
      return false;
    }
  }
  return true;
}

bool AdamW::LiveGradientsInFlatBuffer() const {
  if (!flat_) return false;
  const int64_t elem = flat_grad_.element_size();
  const char* base = static_cast<const char*>(flat_grad_.data_ptr());
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i].tensor;
    if (!p.requires_grad()) continue;
    const torch::Tensor& grad = p.grad();
    if (!grad.defined() || grad.data_ptr() != base + offsets_[i] * elem) return false;
  }
  return true;
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, step_count_);
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, step_count_);
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  auto update = [&](torch::Tensor& p, const torch::Tensor& grad, torch::Tensor& exp_avg,
                    torch::Tensor& exp_avg_sq) {
    exp_avg.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    torch::Tensor denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg, denom, -step_size);
  };
  if (FlatPathValid()) {
    if (flat_param_.is_cpu() && flat_param_.is_floating_point()) {
      // One pass over the four buffers instead of eight kernels and two temporaries: on a small
      // model the update is dispatch, not arithmetic. The same operations in the same order.
      const double decay = options_.weight_decay != 0.0 ? 1.0 - lr * options_.weight_decay : 1.0;
      AT_DISPATCH_FLOATING_TYPES(flat_param_.scalar_type(), "adamw_step", [&] {
        using T = scalar_t;
        T* p = flat_param_.data_ptr<T>();
        const T* g = flat_grad_.data_ptr<T>();
        T* m = flat_exp_avg_.data_ptr<T>();
        T* v = flat_exp_avg_sq_.data_ptr<T>();
        const T beta1 = static_cast<T>(options_.beta1),
                one_minus_beta1 = static_cast<T>(1.0 - options_.beta1);
        const T beta2 = static_cast<T>(options_.beta2),
                one_minus_beta2 = static_cast<T>(1.0 - options_.beta2);
        const T bc2 = static_cast<T>(bias_correction2_sqrt), eps = static_cast<T>(options_.eps);
        const T neg_step = static_cast<T>(-step_size), wd = static_cast<T>(decay);
        const int64_t n = flat_param_.numel();
        for (int64_t i = 0; i < n; ++i) {
          if (i < decayed_numel_ && options_.weight_decay != 0.0) p[i] *= wd;
          m[i] = m[i] * beta1 + g[i] * one_minus_beta1;
          v[i] = v[i] * beta2 + g[i] * g[i] * one_minus_beta2;
          const T denom = std::sqrt(v[i]) / bc2 + eps;
          p[i] += neg_step * (m[i] / denom);
        }
      });
      return;
    }
    if (decayed_numel_ > 0 && options_.weight_decay != 0.0) {
      flat_param_.narrow(0, 0, decayed_numel_).mul_(1.0 - lr * options_.weight_decay);
    }
    update(flat_param_, flat_grad_, flat_exp_avg_, flat_exp_avg_sq_);
    return;
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].tensor;
    const torch::Tensor& grad = p.grad();
    if (!p.requires_grad() || !grad.defined()) continue;
    if (params_[i].decay && options_.weight_decay != 0.0) p.mul_(1.0 - lr * options_.weight_decay);
    update(p, grad, exp_avg_[i], exp_avg_sq_[i]);
  }
}

void AdamW::ZeroGrad() {
  // The whole buffer: the slices of tensors that no longer have a gradient stay zero too, so a
  // data-parallel sum of a slice never adds up stale values.
  if (flat_) flat_grad_.zero_();
  if (FlatPathValid()) return;
  for (auto& p : params_) {
    torch::Tensor grad = p.tensor.mutable_grad();
    if (grad.defined()) grad.zero_();
  }
}

double AdamW::ClipGradNorm(double max_norm) {
  torch::NoGradGuard no_grad;
  double total = 0;
  std::vector<torch::Tensor> grads;
  if (FlatPathValid()) {
    grads.push_back(flat_grad_);
    if (flat_grad_.is_cpu() && flat_grad_.is_floating_point()) {
      // A loop in double instead of a converted copy, a norm kernel and a sync to the host.
      AT_DISPATCH_FLOATING_TYPES(flat_grad_.scalar_type(), "adamw_grad_norm", [&] {
        const scalar_t* g = flat_grad_.data_ptr<scalar_t>();
        double sum = 0;
        for (int64_t i = 0, n = flat_grad_.numel(); i < n; ++i)
          sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
        total = std::sqrt(sum);
      });
    } else {
      total = flat_grad_.to(torch::kDouble).norm(2).item<double>();
    }
  } else {
    std::vector<torch::Tensor> norms;
    for (auto& p : params_) {
      const torch::Tensor& grad = p.tensor.grad();
      if (!p.tensor.requires_grad() || !grad.defined()) continue;
      grads.push_back(grad);
      norms.push_back(grad.to(torch::kDouble).norm(2));
    }
    if (norms.empty()) return 0.0;
    total = torch::stack(norms).norm(2).item<double>();
  }
  if (max_norm > 0.0 && std::isfinite(total) && total > max_norm) {
    const double scale = max_norm / (total + 1e-6);
    for (auto& g : grads) g.mul_(scale);
  }
  return total;
}

std::vector<torch::Tensor> AdamW::GradientBuffers() const {
  if (FlatPathValid()) return {flat_grad_};
  std::vector<torch::Tensor> grads;
  for (const auto& p : params_) {
    const torch::Tensor& grad = p.tensor.grad();
    if (p.tensor.requires_grad() && grad.defined()) grads.push_back(grad);
  }
  return grads;
}

std::map<std::string, torch::Tensor> AdamW::StateDict() const {
  std::map<std::string, torch::Tensor> state;
  for (size_t i = 0; i < params_.size(); ++i) {
    state[params_[i].name + ".exp_avg"] = exp_avg_[i];
    state[params_[i].name + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  state["__step__"] = torch::tensor({step_count_}, torch::kInt64);
  return state;
}

absl::Status AdamW::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  auto step = state.find("__step__");
  if (step == state.end()) return absl::InvalidArgumentError("optimizer state: missing __step__");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, dst] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &exp_avg_[i]},
                               {".exp_avg_sq", &exp_avg_sq_[i]}}) {
      const std::string key = params_[i].name + suffix;
      auto it = state.find(key);
      if (it == state.end()) return absl::InvalidArgumentError("optimizer state: missing " + key);
      if (!it->second.sizes().equals(dst->sizes())) {
        return absl::InvalidArgumentError(absl::StrCat("optimizer state: ", key, " has shape ",
                                                       c10::str(it->second.sizes()), ", expected ",
                                                       c10::str(dst->sizes())));
      }
      dst->copy_(it->second);
    }
  }
  step_count_ = step->second.item<int64_t>();
  return absl::OkStatus();
}

}  // namespace peftd::train
