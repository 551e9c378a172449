#include "adapters/scaled_linear.h"

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

// Runs the forward core for x (..., in) with l, r, c at the given contiguous buffers and saves
// (x, W, y0) plus `keep` (what holds l and r) for the backward.
torch::Tensor RunScaledForward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, std::vector<torch::Tensor> keep,
                               const void* l, const void* r, const void* c) {
  const torch::Tensor x = x_in.contiguous();
  const int64_t in = x.size(-1), out = weight.size(0), n = x.numel() / in;
  torch::Tensor y0 = torch::empty({n, out}, x.options());
  torch::Tensor h = torch::empty(OutShape(x, out), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scaled_linear", [&] {
    using T = scalar_t;
    ScaledForward<T>(n, in, out, x.data_ptr<T>(), weight.data_ptr<T>(), static_cast<const T*>(l),
                     static_cast<const T*>(r), static_cast<const T*>(c), Scratch<T>(0, n * in),
                     y0.data_ptr<T>(), h.data_ptr<T>());
  });
  keep.insert(keep.begin(), {x.view({n, in}), weight, y0});
  ctx->save_for_backward(keep);
  ctx->saved_data["in_shape"] = x.sizes().vec();
  return h;
}

// Where the core's gradients go: dx is allocated when wanted; dl, dr and dc are the caller's
// buffers (nullptr: not wanted).
struct ScaledGrads {
  torch::Tensor dx;
};

ScaledGrads RunScaledBackward(AutogradContext* ctx, const torch::Tensor& dh_in, bool need_x,
                              const void* l, const void* r, void* dl, void* dr, void* dc) {
  const auto saved = ctx->get_saved_variables();
  const torch::Tensor &x2d = saved[0], &weight = saved[1], &y0 = saved[2];
  const int64_t in = weight.size(1), out = weight.size(0), n = x2d.size(0);
  const torch::Tensor dh = dh_in.contiguous();
  ScaledGrads g;
  if (need_x) g.dx = torch::empty(ctx->saved_data["in_shape"].toIntVector(), dh.options());
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "scaled_linear_backward", [&] {
    using T = scalar_t;
    T* dx = need_x ? g.dx.data_ptr<T>() : nullptr;
    T* dxs = dl || !dx ? Scratch<T>(1, n * in) : dx;
    ScaledBackward<T>(n, in, out, dh.data_ptr<T>(), x2d.data_ptr<T>(), weight.data_ptr<T>(),
                      static_cast<const T*>(l), static_cast<const T*>(r), y0.data_ptr<T>(),
                      Scratch<T>(0, n * out), dxs, dx, static_cast<T*>(dl), static_cast<T*>(dr),
                      static_cast<T*>(dc));
  });
  return g;
}

void* Ptr(torch::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

struct ScaledLinearFunction : public torch::autograd::Function<ScaledLinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& l_in,
                               const torch::Tensor& r_in, const torch::Tensor& c_in) {
    const torch::Tensor l = l_in.contiguous(), r = r_in.contiguous(), c = c_in.contiguous();
    return RunScaledForward(ctx, x, weight, {l, r}, l.data_ptr(), r.data_ptr(), c.data_ptr());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &l = saved[3], &r = saved[4];
    const auto opts = l.options();
    torch::Tensor dl = ctx->needs_input_grad(2) ? torch::empty({l.size(0)}, opts) : torch::Tensor();
    torch::Tensor dr = ctx->needs_input_grad(3) ? torch::empty({r.size(0)}, opts) : torch::Tensor();
    torch::Tensor dc = ctx->needs_input_grad(4) ? torch::empty({r.size(0)}, opts) : torch::Tensor();
    ScaledGrads g = RunScaledBackward(ctx, grads[0], ctx->needs_input_grad(0), l.data_ptr(),
                                      r.data_ptr(), Ptr(dl), Ptr(dr), Ptr(dc));
    return {g.dx, torch::Tensor(), dl, dr, dc};
  }
};

// HUT's parameters (M_A, M_B, γ, β) reduced to (l, r, c) in the forward and the core's (dl, dr,
// dc) mapped back in the backward: dM_A[j, :] = dl[j] / R, dM_B[:, o] = dr[o]·γ[o] / R,
// dγ = dr ⊙ m_B + dc ⊙ b0, dβ = dc. l, m_B, r and c live in one buffer (in + 3·out).
struct HutLinearFunction : public torch::autograd::Function<HutLinearFunction> {
  // The bias by pointer: a custom Function of LibTorch 1.13 refuses undefined tensor inputs.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor* bias,
                               const torch::Tensor& hut_a_in, const torch::Tensor& hut_b_in,
                               const torch::Tensor& gamma_in, const torch::Tensor& beta_in) {
    const torch::Tensor hut_a = hut_a_in.contiguous(), hut_b = hut_b_in.contiguous();
    const torch::Tensor gamma = gamma_in.contiguous(), beta = beta_in.contiguous();
    const int64_t in = hut_a.size(0), rank = hut_a.size(1), out = hut_b.size(1);
    torch::Tensor coef = torch::empty({in + 3 * out}, x.options());  // l, m_B, r, c
    const torch::Tensor b0 = bias->defined() ? bias->contiguous() : torch::Tensor();
    torch::Tensor h;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hut_linear", [&] {
      using T = scalar_t;
      const T *a = hut_a.data_ptr<T>(), *b = hut_b.data_ptr<T>(), *g = gamma.data_ptr<T>(),
              *be = beta.data_ptr<T>();
      const T* bp = b0.defined() ? b0.data_ptr<T>() : nullptr;
      T* lp = coef.data_ptr<T>();
      T *mp = lp + in, *rp = mp + out, *cp = rp + out;
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
      h = RunScaledForward(ctx, x, weight, {coef}, lp, rp, cp);
    });
    ctx->saved_data["rank"] = rank;
    ctx->saved_data["has_bias"] = b0.defined();
    // The core saved (x, W, y0, coef); HUT's backward also needs γ and b0.
    ctx->saved_data["gamma"] = gamma;
    if (b0.defined()) ctx->saved_data["bias"] = b0;
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // Tensor inputs in order: x, weight, hut_a, hut_b, gamma, beta.
    const bool need_a = ctx->needs_input_grad(2), need_b = ctx->needs_input_grad(3),
               need_gamma = ctx->needs_input_grad(4), need_beta = ctx->needs_input_grad(5);
    const torch::Tensor coef = ctx->get_saved_variables()[3];
    const int64_t rank = ctx->saved_data["rank"].toInt();
    const torch::Tensor gamma = ctx->saved_data["gamma"].toTensor();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const int64_t out = gamma.size(0), in = coef.size(0) - 3 * out;
    const auto opts = coef.options();
    // dc is β's gradient itself; dl and dr only feed the loops below.
    torch::Tensor dc = need_beta || need_gamma ? torch::empty({out}, opts) : torch::Tensor();
    torch::Tensor da, db, dgamma;
    ScaledGrads g;
    AT_DISPATCH_FLOATING_TYPES(coef.scalar_type(), "hut_linear_backward", [&] {
      using T = scalar_t;
      const T* lp = coef.data_ptr<T>();
      const T *m = lp + in, *rp = m + out;
      T* dl = need_a ? Scratch<T>(2, in + out) : nullptr;
      T* dr = need_b || need_gamma ? Scratch<T>(2, in + out) + in : nullptr;
      T* dcp = dc.defined() ? dc.data_ptr<T>() : nullptr;
      g = RunScaledBackward(ctx, grads[0], ctx->needs_input_grad(0), lp, rp, dl, dr, dcp);
      const T inv = T(1) / static_cast<T>(rank);
      if (need_a) {
        da = torch::empty({in, rank}, opts);
        T* p = da.data_ptr<T>();
        for (int64_t j = 0; j < in; ++j)
          for (int64_t k = 0; k < rank; ++k) p[j * rank + k] = dl[j] * inv;
      }
      if (need_b) {
        db = torch::empty({rank, out}, opts);
        const T* gm = gamma.data_ptr<T>();
        T* p = db.data_ptr<T>();
        for (int64_t o = 0; o < out; ++o) p[o] = dr[o] * gm[o] * inv;
        for (int64_t k = 1; k < rank; ++k) std::copy(p, p + out, p + k * out);
      }
      if (need_gamma) {
        dgamma = torch::empty({out}, opts);
        const T* b0 = has_bias ? ctx->saved_data["bias"].toTensor().data_ptr<T>() : nullptr;
        T* p = dgamma.data_ptr<T>();
        for (int64_t o = 0; o < out; ++o) p[o] = dr[o] * m[o] + (b0 ? dcp[o] * b0[o] : T(0));
      }
    });
    return {
        g.dx, torch::Tensor(), torch::Tensor(), da, db, dgamma, need_beta ? dc : torch::Tensor()};
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
