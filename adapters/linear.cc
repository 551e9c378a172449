#include "adapters/linear.h"

#include "adapters/linear_ops.h"
#include "adapters/norm_probe.h"

namespace peftd::adapters {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                       const torch::TensorOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", torch::zeros({out_features, in_features}, options),
                              /*requires_grad=*/false);
  if (with_bias) {
    bias = register_parameter("bias", torch::zeros({out_features}, options),
                              /*requires_grad=*/false);
  }
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (adapter_ && !merged_) {
    ObserveInput(x);
    return adapter_->Forward(x, weight, bias);
  }
  return FrozenLinear(x, weight, bias);
}

void LinearImpl::ObserveInput(const torch::Tensor& x) {
  if (adapter_ && !merged_ && probe_ && probe_->Due(is_training()))
    probe_->Observe(x, weight, bias);
}

void LinearImpl::Attach(std::shared_ptr<Adapter> adapter, const std::string& name) {
  Detach();
  adapter_ = register_module(name, std::move(adapter));
  adapter_name_ = name;
}

absl::Status LinearImpl::Merge() {
  if (!adapter_) return absl::FailedPreconditionError("merge: no adapter attached");
  if (merged_) return absl::FailedPreconditionError("merge: already merged");
  if (!adapter_->Mergeable()) {
    return absl::FailedPreconditionError(
        "merge: a token-gated adapter cannot be folded into W0 (it changes only some tokens); "
        "export the adapter and the base model separately");
  }
  torch::NoGradGuard no_grad;
  auto [w, b] = adapter_->Merged(weight, bias);
  weight.copy_(w);
  if (b.defined()) {
    if (bias.defined()) {
      bias.copy_(b);
    } else {
      // HUT's β gives a bias-free layer one; Unmerge removes it again.
      bias = register_parameter("bias", b.detach().clone(), /*requires_grad=*/false);
      bias_added_by_merge_ = true;
    }
  }
  merged_ = true;
  return absl::OkStatus();
}

absl::Status LinearImpl::Unmerge() {
  if (!adapter_ || !merged_) return absl::FailedPreconditionError("unmerge: not merged");
  torch::NoGradGuard no_grad;
  auto [w, b] = adapter_->Unmerged(weight, bias);
  weight.copy_(w);
  if (bias_added_by_merge_) {
    parameters_.erase("bias");  // protected in torch::nn::Module; there is no unregister_parameter
    bias = torch::Tensor();
    bias_added_by_merge_ = false;
  } else if (b.defined() && bias.defined()) {
    bias.copy_(b);
  }
  merged_ = false;
  return absl::OkStatus();
}

void LinearImpl::Detach() {
  if (!adapter_) return;
  // A merged layer goes back to W0 first: without its adapter it could never be unmerged.
  if (merged_) (void)Unmerge();
  unregister_module(adapter_name_);
  probe_ = nullptr;  // it observes the adapter that goes
  adapter_.reset();
  adapter_name_.clear();
}

}  // namespace peftd::adapters
