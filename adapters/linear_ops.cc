#include "adapters/linear_ops.h"

#include <algorithm>

#include "adapters/cpu_gemm.h"
#include "adapters/scratch.h"

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
      T* u = Scratch<T>(1, n * r);  // dy·B
      Gemm(false, false, n, r, out, T(1), g, out, b.data_ptr<T>(), r, T(0), u, r);
      if (need_b) {
        db = torch::empty_like(b);
        Gemm(true, false, out, r, n, s, g, out, t.data_ptr<T>(), r, T(0), db.data_ptr<T>(), r);
      }
      if (need_a) {
        da = torch::empty_like(a);
        Gemm(true, false, r, in, n, s, u, r, x2d.data_ptr<T>(), in, T(0), da.data_ptr<T>(), in);
      }
      if (need_x) {
        dx = torch::empty(ctx->saved_data["in_shape"].toIntVector(), dy.options());
        Gemm(false, false, n, in, out, T(1), g, out, weight.data_ptr<T>(), in, T(0),
             dx.data_ptr<T>(), in);
        Gemm(false, false, n, in, r, s, u, r, a.data_ptr<T>(), in, T(1), dx.data_ptr<T>(), in);
      }
    });
    return {dx, torch::Tensor(), torch::Tensor(), da, db, torch::Tensor()};
  }
};

struct LowRankDeltaFunction : public torch::autograd::Function<LowRankDeltaFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& a_in, const torch::Tensor& b_in, double scale) {
    const torch::Tensor x = x_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous();
    const int64_t in = x.size(-1), out = b.size(0), r = a.size(0);
    const torch::Tensor x2d = x.view({-1, in});
    const int64_t n = x2d.size(0);
    torch::Tensor y = torch::empty(OutShape(x, out), x.options());
    torch::Tensor t = torch::empty({n, r}, x.options());  // x·Aᵀ
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "low_rank_delta", [&] {
      using T = scalar_t;
      Gemm(false, true, n, r, in, T(1), x2d.data_ptr<T>(), in, a.data_ptr<T>(), in, T(0),
           t.data_ptr<T>(), r);
      Gemm(false, true, n, out, r, static_cast<T>(scale), t.data_ptr<T>(), r, b.data_ptr<T>(), r,
           T(0), y.data_ptr<T>(), out);
    });
    ctx->save_for_backward({x2d, a, b, t});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["in_shape"] = x.sizes().vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x2d = saved[0], &a = saved[1], &b = saved[2], &t = saved[3];
    const double scale = ctx->saved_data["scale"].toDouble();
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t in = a.size(1), out = b.size(0), r = a.size(0), n = x2d.size(0);
    const bool need_x = ctx->needs_input_grad(0), need_a = ctx->needs_input_grad(1),
               need_b = ctx->needs_input_grad(2);
    torch::Tensor dx, da, db;
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "low_rank_delta_backward", [&] {
      using T = scalar_t;
      const T s = static_cast<T>(scale);
      const T* g = dy.data_ptr<T>();
      T* u = Scratch<T>(1, n * r);  // dy·B
      Gemm(false, false, n, r, out, T(1), g, out, b.data_ptr<T>(), r, T(0), u, r);
      if (need_b) {
        db = torch::empty_like(b);
        Gemm(true, false, out, r, n, s, g, out, t.data_ptr<T>(), r, T(0), db.data_ptr<T>(), r);
      }
      if (need_a) {
        da = torch::empty_like(a);
        Gemm(true, false, r, in, n, s, u, r, x2d.data_ptr<T>(), in, T(0), da.data_ptr<T>(), in);
      }
      if (need_x) {
        dx = torch::empty(ctx->saved_data["in_shape"].toIntVector(), dy.options());
        Gemm(false, false, n, in, r, s, u, r, a.data_ptr<T>(), in, T(0), dx.data_ptr<T>(), in);
      }
    });
    return {dx, da, db, torch::Tensor()};
  }
};

// Y (n, Σout) = x·Wᵀ + b over the concatenated weights, each update accumulated into its
// columns (ldc = Σout), then split into one contiguous tensor per projection.
struct FusedLinearFunction : public torch::autograd::Function<FusedLinearFunction> {
  // `factors` holds (a, b) of every update in order; `slots[k]` is update k's projection.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, const torch::Tensor* bias,
                               torch::TensorList factors, std::vector<int64_t> outs,
                               std::vector<int64_t> slots, std::vector<double> scales) {
    const torch::Tensor x = x_in.contiguous();
    const int64_t in = x.size(-1), total = weight.size(0);
    const torch::Tensor x2d = x.view({-1, in});
    const int64_t n = x2d.size(0);
    std::vector<int64_t> offsets(outs.size(), 0);
    for (size_t i = 1; i < outs.size(); ++i) offsets[i] = offsets[i - 1] + outs[i - 1];
    // x only for the updates' dA: a group without updates (gate/up under q/v adapters) would
    // otherwise keep its input alive until the backward, one (N, in) buffer per layer.
    std::vector<torch::Tensor> saved = {slots.empty() ? torch::Tensor() : x2d, weight};
    variable_list result;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_linear", [&] {
      using T = scalar_t;
      // Y is split right away, so it lives in scratch, and the split is a row copy per part:
      // an ATen view, narrow and copy per projection cost more than the copying on a small model.
      T* y = Scratch<T>(0, n * total);
      T beta = 0;
      if (bias->defined()) {
        const torch::Tensor b0 = bias->contiguous();
        const T* bp = b0.data_ptr<T>();
        for (int64_t i = 0; i < n; ++i) std::copy(bp, bp + total, y + i * total);
        beta = 1;
      }
      Gemm(false, true, n, total, in, T(1), x2d.data_ptr<T>(), in, weight.data_ptr<T>(), in, beta,
           y, total);
      for (size_t k = 0; k < slots.size(); ++k) {
        const torch::Tensor a = factors[2 * k].contiguous(), b = factors[2 * k + 1].contiguous();
        const int64_t r = a.size(0), out = outs[slots[k]];
        torch::Tensor t = torch::empty({n, r}, x.options());  // x·Aᵀ
        Gemm(false, true, n, r, in, T(1), x2d.data_ptr<T>(), in, a.data_ptr<T>(), in, T(0),
             t.data_ptr<T>(), r);
        Gemm(false, true, n, out, r, static_cast<T>(scales[k]), t.data_ptr<T>(), r, b.data_ptr<T>(),
             r, T(1), y + offsets[slots[k]], total);
        saved.insert(saved.end(), {a, b, t});
      }
      for (size_t i = 0; i < outs.size(); ++i) {
        // Fresh tensors, not views of y: callers may modify an output in place.
        torch::Tensor part = torch::empty(OutShape(x, outs[i]), x.options());
        T* p = part.data_ptr<T>();
        for (int64_t row = 0; row < n; ++row) {
          const T* src = y + row * total + offsets[i];
          std::copy(src, src + outs[i], p + row * outs[i]);
        }
        result.push_back(part);
      }
    });
    ctx->save_for_backward(saved);
    ctx->saved_data["in_shape"] = x.sizes().vec();
    ctx->saved_data["rows"] = n;
    ctx->saved_data["outs"] = outs;
    ctx->saved_data["slots"] = slots;
    ctx->saved_data["scales"] = c10::List<double>(scales);
    return result;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x2d = saved[0], &weight = saved[1];
    const std::vector<int64_t> outs = ctx->saved_data["outs"].toIntVector();
    const std::vector<int64_t> slots = ctx->saved_data["slots"].toIntVector();
    const std::vector<double> scales = ctx->saved_data["scales"].toDoubleVector();
    const int64_t in = weight.size(1), total = weight.size(0), n = ctx->saved_data["rows"].toInt();
    // Tensor inputs in order: x, weight, then a and b of every update.
    const bool need_x = ctx->needs_input_grad(0);
    std::vector<torch::Tensor> g(outs.size());
    for (size_t i = 0; i < outs.size(); ++i) g[i] = grads[i].contiguous().view({n, outs[i]});
    // Gradients by argument: x, weight, bias (not a tensor input), each factor, three options.
    variable_list result(3 + 2 * slots.size() + 3);
    const auto opts = weight.options();
    AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "fused_linear_backward", [&] {
      using T = scalar_t;
      torch::Tensor dx;
      if (need_x) {
        dx = torch::empty({n, in}, opts);
        // (n, Σout), as the weights are laid out: the outputs' gradients side by side.
        T* dy = Scratch<T>(0, n * total);
        int64_t offset = 0;
        for (size_t i = 0; i < outs.size(); ++i) {
          const T* gi = g[i].data_ptr<T>();
          for (int64_t row = 0; row < n; ++row)
            std::copy(gi + row * outs[i], gi + (row + 1) * outs[i], dy + row * total + offset);
          offset += outs[i];
        }
        Gemm(false, false, n, in, total, T(1), dy, total, weight.data_ptr<T>(), in, T(0),
             dx.data_ptr<T>(), in);
      }
      for (size_t k = 0; k < slots.size(); ++k) {
        const torch::Tensor &a = saved[2 + 3 * k], &b = saved[3 + 3 * k], &t = saved[4 + 3 * k];
        const torch::Tensor& gk = g[slots[k]];
        const int64_t r = a.size(0), out = outs[slots[k]];
        const T s = static_cast<T>(scales[k]);
        T* u = Scratch<T>(1, n * r);  // dy·B
        Gemm(false, false, n, r, out, T(1), gk.data_ptr<T>(), out, b.data_ptr<T>(), r, T(0), u, r);
        if (ctx->needs_input_grad(3 + 2 * k)) {
          torch::Tensor db = torch::empty_like(b);
          Gemm(true, false, out, r, n, s, gk.data_ptr<T>(), out, t.data_ptr<T>(), r, T(0),
               db.data_ptr<T>(), r);
          result[4 + 2 * k] = db;
        }
        if (ctx->needs_input_grad(2 + 2 * k)) {
          torch::Tensor da = torch::empty_like(a);
          Gemm(true, false, r, in, n, s, u, r, x2d.data_ptr<T>(), in, T(0), da.data_ptr<T>(), in);
          result[3 + 2 * k] = da;
        }
        if (need_x) {
          Gemm(false, false, n, in, r, s, u, r, a.data_ptr<T>(), in, T(1), dx.data_ptr<T>(), in);
        }
      }
      if (need_x) result[0] = dx.view(ctx->saved_data["in_shape"].toIntVector());
    });
    return result;
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

torch::Tensor LowRankDelta(const torch::Tensor& x, const torch::Tensor& lora_a,
                           const torch::Tensor& lora_b, double scale) {
  if (!GemmCovers(x) || lora_a.scalar_type() != x.scalar_type() ||
      lora_b.scalar_type() != x.scalar_type() || lora_a.device() != x.device()) {
    return F::linear(F::linear(x, lora_a).mul_(scale), lora_b);
  }
  return LowRankDeltaFunction::apply(x, lora_a, lora_b, scale);
}

std::vector<torch::Tensor> FusedLinear(const torch::Tensor& x, const torch::Tensor& weight,
                                       const torch::Tensor& bias, const std::vector<int64_t>& outs,
                                       const std::vector<LowRankUpdate>& updates) {
  bool covered = Covered(x, weight, bias);
  std::vector<torch::Tensor> factors;
  std::vector<int64_t> slots;
  std::vector<double> scales;
  for (size_t i = 0; i < updates.size(); ++i) {
    if (!updates[i].a.defined()) continue;
    covered = covered && updates[i].a.scalar_type() == x.scalar_type() &&
              updates[i].b.scalar_type() == x.scalar_type();
    factors.insert(factors.end(), {updates[i].a, updates[i].b});
    slots.push_back(static_cast<int64_t>(i));
    scales.push_back(updates[i].scale);
  }
  if (covered)
    return FusedLinearFunction::apply(x, weight, &bias, torch::TensorList(factors), outs, slots,
                                      scales);
  // The ATen composition: one linear, its column blocks, each update added to its block.
  torch::Tensor y = F::linear(x, weight, bias);
  std::vector<torch::Tensor> result;
  int64_t offset = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    torch::Tensor part = y.narrow(-1, offset, outs[i]);
    offset += outs[i];
    if (i < updates.size() && updates[i].a.defined()) {
      part = part + F::linear(F::linear(x, updates[i].a), updates[i].b) * updates[i].scale;
    }
    result.push_back(part);
  }
  return result;
}

}  // namespace peftd::adapters
