#include "adapters/dora_linear.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

// ‖w[o, :]‖₂ of a contiguous (out, in) buffer, summed in double: the one computation of DoRA's row
// norms, so that m initialised from W0 equals n at B = 0 bit for bit (the layer starts exactly at
// the base).
template <typename T>
void RowNorms(const T* w, int64_t out, int64_t in, T* norms) {
  for (int64_t o = 0; o < out; ++o) {
    double sum = 0;
    for (int64_t j = 0; j < in; ++j) sum += static_cast<double>(w[o * in + j]) * w[o * in + j];
    norms[o] = static_cast<T>(std::sqrt(sum));
  }
}

// What a node returns: the layer from x, the layer from its base, or the change from the base.
enum class Mode { kLayer, kFromBase, kDelta };

// The forward of the three nodes. kLayer: y = x·W0ᵀ + s·t·Bᵀ; else y = base − b0 + s·t·Bᵀ.
// Saves (x2d, weight, a, b, t, y, g, n) and returns h = y ⊙ g + b0, or for kDelta
// M = (g − 1) ⊙ (base − b0) + g ⊙ s·t·Bᵀ (METHODS.md's form, not h − base, which would leave
// rounding where M is zero).
torch::Tensor DoraForward(AutogradContext* ctx, Mode mode, const torch::Tensor& x_in,
                          const torch::Tensor* base_in, const torch::Tensor& weight,
                          const torch::Tensor& bias_in, const torch::Tensor& a_in,
                          const torch::Tensor& b_in, const torch::Tensor& m_in, double scale,
                          double min_norm) {
  const torch::Tensor x = x_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous();
  const torch::Tensor m = m_in.contiguous();
  const torch::Tensor bias = bias_in.defined() ? bias_in.contiguous() : torch::Tensor();
  const int64_t in = x.size(-1), out = weight.size(0), r = a.size(0), n = x.numel() / in;
  const auto opts = x.options();
  // g and the clamped row norms share one buffer: [g | norm].
  torch::Tensor gn = torch::empty({2 * out}, opts);
  torch::Tensor t = torch::empty({n, r}, opts), y = torch::empty({n, out}, opts);
  torch::Tensor h = torch::empty(OutShape(x, out), opts);
  const torch::Tensor base = base_in ? base_in->contiguous() : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dora_linear", [&] {
    using T = scalar_t;
    const T s = static_cast<T>(scale);
    T* wm = Scratch<T>(0, out * in);  // W0 + s·B·A, for its row norms only
    std::copy(weight.data_ptr<T>(), weight.data_ptr<T>() + out * in, wm);
    Gemm(false, false, out, in, r, s, b.data_ptr<T>(), r, a.data_ptr<T>(), in, T(1), wm, in);
    const T* mp = m.data_ptr<T>();
    T *gp = gn.data_ptr<T>(), *np = gp + out;
    RowNorms<T>(wm, out, in, np);
    for (int64_t o = 0; o < out; ++o) {
      np[o] = std::max(np[o], static_cast<T>(min_norm));
      gp[o] = mp[o] / np[o];
    }
    const T* xp = x.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const T* bp = bias.defined() ? bias.data_ptr<T>() : nullptr;
    if (base.defined()) {
      const T* basep = base.data_ptr<T>();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t o = 0; o < out; ++o)
          yp[i * out + o] = bp ? basep[i * out + o] - bp[o] : basep[i * out + o];
    } else {
      Gemm(false, true, n, out, in, T(1), xp, in, weight.data_ptr<T>(), in, T(0), yp, out);
    }
    Gemm(false, true, n, r, in, T(1), xp, in, a.data_ptr<T>(), in, T(0), t.data_ptr<T>(), r);
    T* hp = h.data_ptr<T>();
    if (mode == Mode::kDelta) {
      // h holds s·t·Bᵀ first, then M; y becomes the whole bracket for m's gradient.
      Gemm(false, true, n, out, r, s, t.data_ptr<T>(), r, b.data_ptr<T>(), r, T(0), hp, out);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t o = 0; o < out; ++o) {
          const T lora = hp[i * out + o], y0 = yp[i * out + o];
          hp[i * out + o] = (gp[o] - T(1)) * y0 + gp[o] * lora;
          yp[i * out + o] = y0 + lora;
        }
      }
      return;
    }
    Gemm(false, true, n, out, r, s, t.data_ptr<T>(), r, b.data_ptr<T>(), r, T(1), yp, out);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t o = 0; o < out; ++o) {
        const T v = yp[i * out + o] * gp[o];
        hp[i * out + o] = bp ? v + bp[o] : v;
      }
    }
  });
  ctx->save_for_backward({x.view({n, in}), weight, a, b, t, y, gn});
  ctx->saved_data["scale"] = scale;
  ctx->saved_data["in_shape"] = x.sizes().vec();
  return h;
}

// Gradients (dx, dbase, da, db, dm), each undefined unless wanted. From a base, dx has only the
// adapter's term (the base carries the rest); for kDelta dbase = dM ⊙ (g − 1).
std::vector<torch::Tensor> DoraBackward(AutogradContext* ctx, const torch::Tensor& dh_in, Mode mode,
                                        bool need_x, bool need_base, bool need_a, bool need_b,
                                        bool need_m) {
  const bool from_base = mode != Mode::kLayer;
  const auto saved = ctx->get_saved_variables();
  const torch::Tensor &x2d = saved[0], &weight = saved[1], &a = saved[2], &b = saved[3],
                      &t = saved[4], &y = saved[5], &gn = saved[6];
  const double scale = ctx->saved_data["scale"].toDouble();
  const int64_t in = x2d.size(1), out = weight.size(0), r = a.size(0), n = x2d.size(0);
  const torch::Tensor dh = dh_in.contiguous();
  const auto opts = dh.options();
  torch::Tensor dy = torch::empty({n, out}, opts);
  torch::Tensor dx, da, db, dm;
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "dora_linear_backward", [&] {
    using T = scalar_t;
    const T s = static_cast<T>(scale);
    const T *gh = dh.data_ptr<T>(), *gp = gn.data_ptr<T>(), *yp = y.data_ptr<T>();
    T* dyp = dy.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) dyp[i * out + o] = gh[i * out + o] * gp[o];
    if (need_m) {
      dm = torch::zeros({out}, opts);
      T* dmp = dm.data_ptr<T>();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t o = 0; o < out; ++o) dmp[o] += gh[i * out + o] * yp[i * out + o];
      const T* np = gp + out;
      for (int64_t o = 0; o < out; ++o) dmp[o] /= np[o];
    }
    T* u = Scratch<T>(0, n * r);  // dy·B
    Gemm(false, false, n, r, out, T(1), dyp, out, b.data_ptr<T>(), r, T(0), u, r);
    if (need_b) {
      db = torch::empty_like(b);
      Gemm(true, false, out, r, n, s, dyp, out, t.data_ptr<T>(), r, T(0), db.data_ptr<T>(), r);
    }
    if (need_a) {
      da = torch::empty_like(a);
      Gemm(true, false, r, in, n, s, u, r, x2d.data_ptr<T>(), in, T(0), da.data_ptr<T>(), in);
    }
    if (need_x) {
      dx = torch::empty(ctx->saved_data["in_shape"].toIntVector(), opts);
      T beta = 0;
      if (!from_base) {
        Gemm(false, false, n, in, out, T(1), dyp, out, weight.data_ptr<T>(), in, T(0),
             dx.data_ptr<T>(), in);
        beta = 1;
      }
      Gemm(false, false, n, in, r, s, u, r, a.data_ptr<T>(), in, beta, dx.data_ptr<T>(), in);
    }
  });
  torch::Tensor dbase;
  if (need_base) {
    std::vector<int64_t> shape = ctx->saved_data["in_shape"].toIntVector();
    shape.back() = out;
    if (mode == Mode::kDelta) {
      dbase = torch::empty(shape, opts);
      AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "dora_delta_base_grad", [&] {
        using T = scalar_t;
        const T *gh = dh.data_ptr<T>(), *gp = gn.data_ptr<T>();
        T* p = dbase.data_ptr<T>();
        for (int64_t i = 0; i < n; ++i)
          for (int64_t o = 0; o < out; ++o) p[i * out + o] = gh[i * out + o] * (gp[o] - T(1));
      });
    } else {
      dbase = dy.view(shape);
    }
  }
  return {dx, dbase, da, db, dm};
}

struct DoraLinearFunction : public torch::autograd::Function<DoraLinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor* bias,
                               const torch::Tensor& a, const torch::Tensor& b,
                               const torch::Tensor& m, double scale, double min_norm) {
    return DoraForward(ctx, Mode::kLayer, x, nullptr, weight, *bias, a, b, m, scale, min_norm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Tensor inputs: x, weight, a, b, m.
    auto d =
        DoraBackward(ctx, grads[0], Mode::kLayer, ctx->needs_input_grad(0), false,
                     ctx->needs_input_grad(2), ctx->needs_input_grad(3), ctx->needs_input_grad(4));
    return {d[0], torch::Tensor(), torch::Tensor(), d[2], d[3],
            d[4], torch::Tensor(), torch::Tensor()};
  }
};

// kFromBase or kDelta, by the `delta` flag.
struct DoraFromBaseFunction : public torch::autograd::Function<DoraFromBaseFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& base, const torch::Tensor& weight,
                               const torch::Tensor* bias, const torch::Tensor& a,
                               const torch::Tensor& b, const torch::Tensor& m, double scale,
                               double min_norm, bool delta) {
    ctx->saved_data["delta"] = delta;
    return DoraForward(ctx, delta ? Mode::kDelta : Mode::kFromBase, x, &base, weight, *bias, a, b,
                       m, scale, min_norm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Tensor inputs: x, base, weight, a, b, m.
    const Mode mode = ctx->saved_data["delta"].toBool() ? Mode::kDelta : Mode::kFromBase;
    auto d =
        DoraBackward(ctx, grads[0], mode, ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                     ctx->needs_input_grad(3), ctx->needs_input_grad(4), ctx->needs_input_grad(5));
    return {d[0], d[1], torch::Tensor(), torch::Tensor(), d[2],
            d[3], d[4], torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

bool Covered(const torch::Tensor& x, const torch::Tensor& weight,
             std::initializer_list<const torch::Tensor*> others) {
  if (!GemmCovers(x) || weight.scalar_type() != x.scalar_type() || !weight.is_contiguous() ||
      weight.requires_grad() || weight.device() != x.device()) {
    return false;
  }
  for (const torch::Tensor* t : others) {
    if (t->defined() && (t->scalar_type() != x.scalar_type() || t->device() != x.device()))
      return false;
  }
  return true;
}

// g = m / n with n = max(row_norm(W0 + s·B·A), floor), n without a gradient.
torch::Tensor Gain(const torch::Tensor& weight, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& m, double scale, double min_norm) {
  torch::Tensor norm;
  {
    torch::NoGradGuard no_grad;
    norm = DoraRowNorms(torch::addmm(weight, b, a, 1, scale)).clamp_min_(min_norm);
  }
  return m / norm;
}

}  // namespace

torch::Tensor DoraRowNorms(const torch::Tensor& w_in) {
  torch::NoGradGuard no_grad;
  if (!GemmCovers(w_in) || w_in.dim() != 2) return w_in.norm(2, 1);
  const torch::Tensor w = w_in.contiguous();
  torch::Tensor norms = torch::empty({w.size(0)}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "dora_row_norms", [&] {
    RowNorms<scalar_t>(w.data_ptr<scalar_t>(), w.size(0), w.size(1), norms.data_ptr<scalar_t>());
  });
  return norms;
}

torch::Tensor DoraLinear(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, const torch::Tensor& lora_a,
                         const torch::Tensor& lora_b, const torch::Tensor& magnitude, double scale,
                         double min_norm) {
  if (!Covered(x, weight, {&bias, &lora_a, &lora_b, &magnitude}) ||
      (bias.defined() && bias.requires_grad())) {
    torch::Tensor y = F::linear(x, weight) + scale * F::linear(F::linear(x, lora_a), lora_b);
    torch::Tensor h = y * Gain(weight, lora_a, lora_b, magnitude, scale, min_norm);
    return bias.defined() ? h + bias : h;
  }
  return DoraLinearFunction::apply(x, weight, &bias, lora_a, lora_b, magnitude, scale, min_norm);
}

namespace {

torch::Tensor FromBaseOrDelta(const torch::Tensor& x, const torch::Tensor& base,
                              const torch::Tensor& weight, const torch::Tensor& bias,
                              const torch::Tensor& lora_a, const torch::Tensor& lora_b,
                              const torch::Tensor& magnitude, double scale, double min_norm,
                              bool delta) {
  if (!Covered(x, weight, {&base, &bias, &lora_a, &lora_b, &magnitude}) ||
      (bias.defined() && bias.requires_grad()) ||
      !base.sizes().equals(OutShape(x, weight.size(0)))) {
    const torch::Tensor y = bias.defined() ? base - bias : base;
    const torch::Tensor lora = scale * F::linear(F::linear(x, lora_a), lora_b);
    const torch::Tensor g = Gain(weight, lora_a, lora_b, magnitude, scale, min_norm);
    if (delta) return (g - 1) * y + g * lora;
    torch::Tensor h = (y + lora) * g;
    return bias.defined() ? h + bias : h;
  }
  return DoraFromBaseFunction::apply(x, base, weight, &bias, lora_a, lora_b, magnitude, scale,
                                     min_norm, delta);
}

}  // namespace

torch::Tensor DoraFromBase(const torch::Tensor& x, const torch::Tensor& base,
                           const torch::Tensor& weight, const torch::Tensor& bias,
                           const torch::Tensor& lora_a, const torch::Tensor& lora_b,
                           const torch::Tensor& magnitude, double scale, double min_norm) {
  return FromBaseOrDelta(x, base, weight, bias, lora_a, lora_b, magnitude, scale, min_norm,
                         /*delta=*/false);
}

torch::Tensor DoraDelta(const torch::Tensor& x, const torch::Tensor& base,
                        const torch::Tensor& weight, const torch::Tensor& bias,
                        const torch::Tensor& lora_a, const torch::Tensor& lora_b,
                        const torch::Tensor& magnitude, double scale, double min_norm) {
  return FromBaseOrDelta(x, base, weight, bias, lora_a, lora_b, magnitude, scale, min_norm,
                         /*delta=*/true);
}

}  // namespace peftd::adapters
