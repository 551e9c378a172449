#include "adapters/scaled_linear.h"

#include <vector>

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

// The shared core of both nodes, on contiguous buffers. Forward: y0 = (x ⊙ l)·Wᵀ and
// h = y0 ⊙ r + c; y0 is kept for r's gradient.
template <typename T>
void ScaledForward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* l,
                   const T* r, const T* c, T* xs, T* y0, T* h) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xr = x + i * in;
    T* sr = xs + i * in;
    for (int64_t j = 0; j < in; ++j) sr[j] = xr[j] * l[j];
  }
  Gemm(false, true, n, out, in, T(1), xs, in, w, in, T(0), y0, out);
  for (int64_t i = 0; i < n; ++i) {
    const T* yr = y0 + i * out;
    T* hr = h + i * out;
    for (int64_t o = 0; o < out; ++o) hr[o] = c[o] + yr[o] * r[o];
  }
}

// Backward from dh (n, out): dc = Σ_i dh, dr = Σ_i dh ⊙ y0, dxs = (dh ⊙ r)·W, dl = Σ_i dxs ⊙ x,
// dx = dxs ⊙ l. Null outputs are not wanted; `dy0` (n, out) and `dxs` (n, in) are scratch,
// `dxs` may be dx itself.
template <typename T>
void ScaledBackward(int64_t n, int64_t in, int64_t out, const T* dh, const T* x, const T* w,
                    const T* l, const T* r, const T* y0, T* dy0, T* dxs, T* dx, T* dl, T* dr,
                    T* dc) {
  if (dc) std::fill(dc, dc + out, T(0));
  if (dr) std::fill(dr, dr + out, T(0));
  for (int64_t i = 0; i < n; ++i) {
    const T* g = dh + i * out;
    const T* yr = y0 + i * out;
    T* d = dy0 + i * out;
    for (int64_t o = 0; o < out; ++o) d[o] = g[o] * r[o];
    if (dc)
      for (int64_t o = 0; o < out; ++o) dc[o] += g[o];
    if (dr)
      for (int64_t o = 0; o < out; ++o) dr[o] += g[o] * yr[o];
  }
  if (!dx && !dl) return;
  Gemm(false, false, n, in, out, T(1), dy0, out, w, in, T(0), dxs, in);
  if (dl) {
    std::fill(dl, dl + in, T(0));
    for (int64_t i = 0; i < n; ++i) {
      const T* s = dxs + i * in;
      const T* xr = x + i * in;
      for (int64_t j = 0; j < in; ++j) dl[j] += s[j] * xr[j];
    }
  }
  if (dx) {
    for (int64_t i = 0; i < n; ++i) {
      const T* s = dxs + i * in;
      T* d = dx + i * in;
      for (int64_t j = 0; j < in; ++j) d[j] = s[j] * l[j];
    }
  }
}

// Runs the forward core for x (..., in) and saves what the backward needs.
torch::Tensor RunScaledForward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, const torch::Tensor& l,
                               const torch::Tensor& r, const torch::Tensor& c) {
  const torch::Tensor x = x_in.contiguous();
  const int64_t in = x.size(-1), out = weight.size(0), n = x.numel() / in;
  torch::Tensor xs = torch::empty({n, in}, x.options());
  torch::Tensor y0 = torch::empty({n, out}, x.options());
  torch::Tensor h = torch::empty(OutShape(x, out), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scaled_linear", [&] {
    using T = scalar_t;
    ScaledForward<T>(n, in, out, x.data_ptr<T>(), weight.data_ptr<T>(), l.data_ptr<T>(),
                     r.data_ptr<T>(), c.data_ptr<T>(), xs.data_ptr<T>(), y0.data_ptr<T>(),
                     h.data_ptr<T>());
  });
  ctx->save_for_backward({x.view({n, in}), weight, l, r, y0});
  ctx->saved_data["in_shape"] = x.sizes().vec();
  return h;
}

// The core's gradients (dx, dl, dr, dc), each undefined unless wanted.
std::vector<torch::Tensor> RunScaledBackward(AutogradContext* ctx, const torch::Tensor& dh_in,
                                             bool need_x, bool need_l, bool need_r, bool need_c) {
  const auto saved = ctx->get_saved_variables();
  const torch::Tensor &x2d = saved[0], &weight = saved[1], &l = saved[2], &r = saved[3],
                      &y0 = saved[4];
  const int64_t in = weight.size(1), out = weight.size(0), n = x2d.size(0);
  const torch::Tensor dh = dh_in.contiguous();
  const auto opts = dh.options();
  torch::Tensor dy0 = torch::empty({n, out}, opts);
  torch::Tensor dx =
      need_x ? torch::empty(ctx->saved_data["in_shape"].toIntVector(), opts) : torch::Tensor();
  torch::Tensor dxs = need_l || !need_x ? torch::empty({n, in}, opts) : dx;
  torch::Tensor dl = need_l ? torch::empty({in}, opts) : torch::Tensor();
  torch::Tensor dr = need_r ? torch::empty({out}, opts) : torch::Tensor();
  torch::Tensor dc = need_c ? torch::empty({out}, opts) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "scaled_linear_backward", [&] {
    using T = scalar_t;
    auto ptr = [](torch::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
    ScaledBackward<T>(n, in, out, dh.data_ptr<T>(), x2d.data_ptr<T>(), weight.data_ptr<T>(),
                      l.data_ptr<T>(), r.data_ptr<T>(), y0.data_ptr<T>(), dy0.data_ptr<T>(),
                      ptr(dxs), ptr(dx), ptr(dl), ptr(dr), ptr(dc));
  });
  return {dx, dl, dr, dc};
}

struct ScaledLinearFunction : public torch::autograd::Function<ScaledLinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& l,
                               const torch::Tensor& r, const torch::Tensor& c) {
    return RunScaledForward(ctx, x, weight, l.contiguous(), r.contiguous(), c.contiguous());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto g = RunScaledBackward(ctx, grads[0], ctx->needs_input_grad(0), ctx->needs_input_grad(2),
                               ctx->needs_input_grad(3), ctx->needs_input_grad(4));
    return {g[0], torch::Tensor(), g[1], g[2], g[3]};
  }
};

// HUT's parameters (M_A, M_B, γ, β) reduced to (l, r, c) in the forward and the core's (dl, dr,
// dc) mapped back in the backward: dM_A[j, :] = dl[j] / R, dM_B[:, o] = dr[o]·γ[o] / R,
// dγ = dr ⊙ m_B + dc ⊙ b0, dβ = dc.
struct HutLinearFunction : public torch::autograd::Function<HutLinearFunction> {
  // The bias by pointer: a custom Function of LibTorch 1.13 refuses undefined tensor inputs.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor* bias,
                               const torch::Tensor& hut_a_in, const torch::Tensor& hut_b_in,
                               const torch::Tensor& gamma_in, const torch::Tensor& beta_in) {
    const torch::Tensor hut_a = hut_a_in.contiguous(), hut_b = hut_b_in.contiguous();
    const torch::Tensor gamma = gamma_in.contiguous(), beta = beta_in.contiguous();
    const int64_t in = hut_a.size(0), rank = hut_a.size(1), out = hut_b.size(1);
    const auto opts = x.options();
    torch::Tensor l = torch::empty({in}, opts), m_b = torch::empty({out}, opts);
    torch::Tensor r = torch::empty({out}, opts), c = torch::empty({out}, opts);
    const torch::Tensor b0 = bias->defined() ? bias->contiguous() : torch::Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hut_linear", [&] {
      using T = scalar_t;
      const T *a = hut_a.data_ptr<T>(), *b = hut_b.data_ptr<T>(), *g = gamma.data_ptr<T>(),
              *be = beta.data_ptr<T>();
      const T* bp = b0.defined() ? b0.data_ptr<T>() : nullptr;
      T *lp = l.data_ptr<T>(), *mp = m_b.data_ptr<T>(), *rp = r.data_ptr<T>(),
        *cp = c.data_ptr<T>();
      for (int64_t j = 0; j < in; ++j) {
        T sum = 0;
        for (int64_t k = 0; k < rank; ++k) sum += a[j * rank + k];
        lp[j] = sum / static_cast<T>(rank);
      }
      std::fill(mp, mp + out, T(0));
      for (int64_t k = 0; k < rank; ++k)
        for (int64_t o = 0; o < out; ++o) mp[o] += b[k * out + o];
      for (int64_t o = 0; o < out; ++o) {
        mp[o] /= static_cast<T>(rank);
        rp[o] = g[o] * mp[o];
        cp[o] = bp ? be[o] + g[o] * bp[o] : be[o];
      }
    });
    ctx->saved_data["rank"] = rank;
    ctx->saved_data["has_bias"] = b0.defined();
    torch::Tensor h = RunScaledForward(ctx, x, weight, l, r, c);
    // The core saved (x, W, l, r, y0); HUT's backward also needs γ, m_B and b0.
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["m_b"] = m_b;
    if (b0.defined()) ctx->saved_data["bias"] = b0;
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Tensor inputs in order: x, weight, hut_a, hut_b, gamma, beta.
    const bool need_a = ctx->needs_input_grad(2), need_b = ctx->needs_input_grad(3),
               need_gamma = ctx->needs_input_grad(4), need_beta = ctx->needs_input_grad(5);
    auto g = RunScaledBackward(ctx, grads[0], ctx->needs_input_grad(0), need_a,
                               need_b || need_gamma, need_beta || need_gamma);
    const torch::Tensor &dl = g[1], &dr = g[2], &dc = g[3];
    const int64_t rank = ctx->saved_data["rank"].toInt();
    const torch::Tensor gamma = ctx->saved_data["gamma"].toTensor();
    const torch::Tensor m_b = ctx->saved_data["m_b"].toTensor();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const int64_t out = m_b.size(0);
    torch::Tensor da, db, dgamma;
    AT_DISPATCH_FLOATING_TYPES(m_b.scalar_type(), "hut_linear_backward", [&] {
      using T = scalar_t;
      const T inv = T(1) / static_cast<T>(rank);
      if (need_a) {
        const int64_t in = dl.size(0);
        da = torch::empty({in, rank}, m_b.options());
        const T* d = dl.data_ptr<T>();
        T* p = da.data_ptr<T>();
        for (int64_t j = 0; j < in; ++j)
          for (int64_t k = 0; k < rank; ++k) p[j * rank + k] = d[j] * inv;
      }
      if (need_b) {
        db = torch::empty({rank, out}, m_b.options());
        const T *d = dr.data_ptr<T>(), *gm = gamma.data_ptr<T>();
        T* p = db.data_ptr<T>();
        for (int64_t o = 0; o < out; ++o) p[o] = d[o] * gm[o] * inv;
        for (int64_t k = 1; k < rank; ++k) std::copy(p, p + out, p + k * out);
      }
      if (need_gamma) {
        dgamma = torch::empty({out}, m_b.options());
        const T *d = dr.data_ptr<T>(), *m = m_b.data_ptr<T>(), *dcp = dc.data_ptr<T>();
        const T* b0 = has_bias ? ctx->saved_data["bias"].toTensor().data_ptr<T>() : nullptr;
        T* p = dgamma.data_ptr<T>();
        for (int64_t o = 0; o < out; ++o) p[o] = d[o] * m[o] + (b0 ? dcp[o] * b0[o] : T(0));
      }
    });
    return {
        g[0], torch::Tensor(), torch::Tensor(), da, db, dgamma, need_beta ? dc : torch::Tensor()};
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

}  // namespace

torch::Tensor ScaledLinear(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& l, const torch::Tensor& r, const torch::Tensor& c) {
  if (!Covered(x, weight, {&l, &r, &c})) return torch::addcmul(c, F::linear(x * l, weight), r);
  return ScaledLinearFunction::apply(x, weight, l, r, c);
}

torch::Tensor HutLinear(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias, const torch::Tensor& hut_a,
                        const torch::Tensor& hut_b, const torch::Tensor& gamma,
                        const torch::Tensor& beta) {
  if (!Covered(x, weight, {&bias, &hut_a, &hut_b, &gamma, &beta}) ||
      (bias.defined() && bias.requires_grad())) {
    // METHODS.md, HUT: γ ⊙ ((x ⊙ m_A)·W0ᵀ ⊙ m_B + b0) + β.
    const torch::Tensor shift = bias.defined() ? torch::addcmul(beta, gamma, bias) : beta;
    return torch::addcmul(shift, F::linear(x * hut_a.mean(1), weight), gamma * hut_b.mean(0));
  }
  return HutLinearFunction::apply(x, weight, &bias, hut_a, hut_b, gamma, beta);
}

}  // namespace peftd::adapters
