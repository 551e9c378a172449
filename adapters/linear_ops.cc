#include "adapters/linear_ops.h"

#include "adapters/cpu_gemm.h"

namespace peftd::adapters {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace F = torch::nn::functional;

std::vector<int64_t> OutShape(const torch::Tensor& x, int64_t out) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return shape;
}

// y (n, out) = x (n, in) · Wᵀ + b
template <typename T>
void Project(const torch::Tensor& x2d, const torch::Tensor& weight, const torch::Tensor& bias,
             torch::Tensor& y) {
  const int64_t n = x2d.size(0), in = x2d.size(1), out = weight.size(0);
  T beta = 0;
  if (bias.defined()) {
    y.copy_(bias.expand({n, out}));
    beta = 1;
  }
  Gemm(false, true, n, out, in, T(1), x2d.data_ptr<T>(), in, weight.data_ptr<T>(), in, beta,
       y.data_ptr<T>(), out);
}

struct FrozenLinearFunction : public torch::autograd::Function<FrozenLinearFunction> {
  // The bias by pointer: a custom Function of LibTorch 1.13 refuses undefined tensor inputs, and a
  // frozen bias has no gradient to route.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, const torch::Tensor* bias) {
    const torch::Tensor x = x_in.contiguous();
    const torch::Tensor x2d = x.view({-1, x.size(-1)});
    torch::Tensor y = torch::empty(OutShape(x, weight.size(0)), x.options());
    torch::Tensor y2d = y.view({-1, weight.size(0)});
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "frozen_linear",
                               [&] { Project<scalar_t>(x2d, weight, *bias, y2d); });
    ctx->save_for_backward({weight});
    ctx->saved_data["in_shape"] = x.sizes().vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!ctx->needs_input_grad(0)) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const torch::Tensor weight = ctx->get_saved_variables()[0];
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t out = weight.size(0), in = weight.size(1), n = dy.numel() / out;
    torch::Tensor dx = torch::empty(ctx->saved_data["in_shape"].toIntVector(), dy.options());
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "frozen_linear_backward", [&] {
      Gemm(false, false, n, in, out, scalar_t(1), dy.data_ptr<scalar_t>(), out,
           weight.data_ptr<scalar_t>(), in, scalar_t(0), dx.data_ptr<scalar_t>(), in);
    });
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

struct LoraLinearFunction : public torch::autograd::Function<LoraLinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, const torch::Tensor* bias,
                               const torch::Tensor& a_in, const torch::Tensor& b_in, double scale) {
    const torch::Tensor x = x_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous();
    const int64_t in = x.size(-1), out = weight.size(0), r = a.size(0);
    const torch::Tensor x2d = x.view({-1, in});
    const int64_t n = x2d.size(0);
    torch::Tensor y = torch::empty(OutShape(x, out), x.options());
    torch::Tensor y2d = y.view({-1, out});
    torch::Tensor t = torch::empty({n, r}, x.options());  // x·Aᵀ
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lora_linear", [&] {
      Project<scalar_t>(x2d, weight, *bias, y2d);
      Gemm(false, true, n, r, in, scalar_t(1), x2d.data_ptr<scalar_t>(), in, a.data_ptr<scalar_t>(),
           in, scalar_t(0), t.data_ptr<scalar_t>(), r);
      Gemm(false, true, n, out, r, static_cast<scalar_t>(scale), t.data_ptr<scalar_t>(), r,
           b.data_ptr<scalar_t>(), r, scalar_t(1), y2d.data_ptr<scalar_t>(), out);
    });
    ctx->save_for_backward({x2d, weight, a, b, t});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["in_shape"] = x.sizes().vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x2d = saved[0], &weight = saved[1], &a = saved[2], &b = saved[3],
                        &t = saved[4];
    const double scale = ctx->saved_data["scale"].toDouble();
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t in = weight.size(1), out = weight.size(0), r = a.size(0), n = x2d.size(0);
    // needs_input_grad counts tensor inputs only: x, weight, lora_a, lora_b.
    const bool need_x = ctx->needs_input_grad(0), need_a = ctx->needs_input_grad(2),
               need_b = ctx->needs_input_grad(3);
    torch::Tensor dx, da, db;
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "lora_linear_backward", [&] {
      using T = scalar_t;
      const T s = static_cast<T>(scale);
      const T* g = dy.data_ptr<T>();
      torch::Tensor u = torch::empty({n, r}, dy.options());  // dy·B
      Gemm(false, false, n, r, out, T(1), g, out, b.data_ptr<T>(), r, T(0), u.data_ptr<T>(), r);
      if (need_b) {
        db = torch::empty_like(b);
        Gemm(true, false, out, r, n, s, g, out, t.data_ptr<T>(), r, T(0), db.data_ptr<T>(), r);
      }
      if (need_a) {
        da = torch::empty_like(a);
        Gemm(true, false, r, in, n, s, u.data_ptr<T>(), r, x2d.data_ptr<T>(), in, T(0),
             da.data_ptr<T>(), in);
      }
      if (need_x) {
        dx = torch::empty(ctx->saved_data["in_shape"].toIntVector(), dy.options());
        Gemm(false, false, n, in, out, T(1), g, out, weight.data_ptr<T>(), in, T(0),
             dx.data_ptr<T>(), in);
        Gemm(false, false, n, in, r, s, u.data_ptr<T>(), r, a.data_ptr<T>(), in, T(1),
             dx.data_ptr<T>(), in);
      }
    });
    return {dx, torch::Tensor(), torch::Tensor(), da, db, torch::Tensor()};
  }
};

bool Covered(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return GemmCovers(x) && weight.scalar_type() == x.scalar_type() && weight.is_contiguous() &&
         !weight.requires_grad() && weight.device() == x.device() &&
         (!bias.defined() || (!bias.requires_grad() && bias.scalar_type() == x.scalar_type()));
}

}  // namespace

torch::Tensor FrozenLinear(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias) {
  if (!Covered(x, weight, bias)) return F::linear(x, weight, bias);
  return FrozenLinearFunction::apply(x, weight, &bias);
}

torch::Tensor LoraLinear(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, const torch::Tensor& lora_a,
                         const torch::Tensor& lora_b, double scale) {
  if (!Covered(x, weight, bias) || lora_a.scalar_type() != x.scalar_type() ||
      lora_b.scalar_type() != x.scalar_type()) {
    torch::Tensor x2d = x.reshape({-1, x.size(-1)});
    torch::Tensor h = F::linear(x2d, weight, bias);
    h.addmm_(F::linear(x2d, lora_a), lora_b.t(), /*beta=*/1, /*alpha=*/scale);
    return h.view(OutShape(x, weight.size(0)));
  }
  return LoraLinearFunction::apply(x, weight, &bias, lora_a, lora_b, scale);
}

}  // namespace peftd::adapters
