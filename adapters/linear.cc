#include "adapters/linear.h"

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
  if (adapter_) return adapter_->Forward(x, weight, bias);
  return torch::nn::functional::linear(x, weight, bias);
}

void LinearImpl::Attach(std::shared_ptr<Adapter> adapter, const std::string& name) {
  Detach();
  adapter_ = register_module(name, std::move(adapter));
  adapter_name_ = name;
}

void LinearImpl::Detach() {
  if (!adapter_) return;
  unregister_module(adapter_name_);
  adapter_.reset();
  adapter_name_.clear();
}

}  // namespace peftd::adapters
