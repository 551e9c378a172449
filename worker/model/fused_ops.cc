#include "worker/model/fused_ops.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "adapters/cpu_gemm.h"

namespace peftd::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per parallel task: enough work to pay for a task on small models, all cores on large ones.
int64_t Grain(int64_t row_elements) { return std::max<int64_t>(1, 16384 / row_elements); }

// --- RMSNorm
// --------------------------------------------------------------------------------------

struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight_in, double eps) {
    const torch::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
    const int64_t h = x.size(-1), rows = x.numel() / h;
    torch::Tensor y = torch::empty_like(x);
    torch::Tensor rstd = torch::empty({rows}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_forward", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* wp = weight.data_ptr<scalar_t>();
      scalar_t* yp = y.data_ptr<scalar_t>();
      scalar_t* rp = rstd.data_ptr<scalar_t>();
      at::parallel_for(0, rows, Grain(h), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const scalar_t* xr = xp + row * h;
          scalar_t* yr = yp + row * h;
          double sum = 0;
          for (int64_t i = 0; i < h; ++i) sum += static_cast<double>(xr[i]) * xr[i];
          const scalar_t r = static_cast<scalar_t>(1.0 / std::sqrt(sum / h + eps));
          rp[row] = r;
          for (int64_t i = 0; i < h; ++i) yr[i] = wp[i] * (xr[i] * r);
        }
      });
    });
    ctx->save_for_backward({x, weight, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &rstd = saved[2];
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t h = x.size(-1), rows = x.numel() / h;
    const bool need_x = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    torch::Tensor dx = need_x ? torch::empty_like(x) : torch::Tensor();
    torch::Tensor dw;
    if (need_w) {
      // dW = Σ_rows dy ⊙ x ⊙ r: the normalised input, recomputed.
      dw = (dy.reshape({rows, h}) * x.reshape({rows, h}) * rstd.unsqueeze(-1)).sum(0);
    }
    if (need_x) {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_backward", [&] {
        const scalar_t* xp = x.data_ptr<scalar_t>();
        const scalar_t* wp = weight.data_ptr<scalar_t>();
        const scalar_t* rp = rstd.data_ptr<scalar_t>();
        const scalar_t* gp = dy.data_ptr<scalar_t>();
        scalar_t* dxp = dx.data_ptr<scalar_t>();
        at::parallel_for(0, rows, Grain(h), [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            const scalar_t* xr = xp + row * h;
            const scalar_t* gr = gp + row * h;
            scalar_t* dxr = dxp + row * h;
            const double r = rp[row];
            // dx = r·(w ⊙ dy) − x·r³·⟨w ⊙ dy, x⟩ / H
            double dot = 0;
            for (int64_t i = 0; i < h; ++i) dot += static_cast<double>(wp[i] * gr[i]) * xr[i];
            const scalar_t c = static_cast<scalar_t>(r * r * r * dot / h);
            const scalar_t rs = static_cast<scalar_t>(r);
            for (int64_t i = 0; i < h; ++i) dxr[i] = rs * (wp[i] * gr[i]) - xr[i] * c;
          }
        });
      });
    }
    return {dx, dw, torch::Tensor()};
  }
};

// --- RoPE
// -----------------------------------------------------------------------------------------

struct RopeFunction : public torch::autograd::Function<RopeFunction> {
  // x (B, T, H·D) → (B, H, T, D); with `inverse` the transposed map for the backward.
  template <typename scalar_t>
  static void Apply(const scalar_t* src, scalar_t* dst, const scalar_t* cp, const scalar_t* sp,
                    int64_t b, int64_t t, int64_t heads, int64_t d, bool backward) {
    const int64_t half = d / 2;
    at::parallel_for(0, b * t, Grain(heads * d), [&](int64_t begin, int64_t end) {
      for (int64_t bt = begin; bt < end; ++bt) {
        const int64_t bi = bt / t, ti = bt % t;
        const scalar_t* c = cp + bt * d;
        const scalar_t* s = sp + bt * d;
        for (int64_t hi = 0; hi < heads; ++hi) {
          // Token-major (B, T, H, D) row and head-major (B, H, T, D) row of the same vector.
          const int64_t token_major = (bt * heads + hi) * d;
          const int64_t head_major = ((bi * heads + hi) * t + ti) * d;
          if (!backward) {
            const scalar_t* x = src + token_major;
            scalar_t* o = dst + head_major;
            for (int64_t i = 0; i < half; ++i) o[i] = x[i] * c[i] - x[i + half] * s[i];
            for (int64_t i = half; i < d; ++i) o[i] = x[i] * c[i] + x[i - half] * s[i];
          } else {
            // dx_j = g_j·cos_j + (j < D/2 ? g_{j+D/2}·sin_{j+D/2} : −g_{j−D/2}·sin_{j−D/2})
            const scalar_t* g = src + head_major;
            scalar_t* dx = dst + token_major;
            for (int64_t i = 0; i < half; ++i) dx[i] = g[i] * c[i] + g[i + half] * s[i + half];
            for (int64_t i = half; i < d; ++i) dx[i] = g[i] * c[i] - g[i - half] * s[i - half];
          }
        }
      }
    });
  }

  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& cos_in, const torch::Tensor& sin_in,
                               int64_t heads) {
    const torch::Tensor x = x_in.contiguous();
    const torch::Tensor cos = cos_in.contiguous(), sin = sin_in.contiguous();
    const int64_t b = x.size(0), t = x.size(1), d = x.size(2) / heads;
    torch::Tensor out = torch::empty({b, heads, t, d}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rope_forward", [&] {
      Apply<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), cos.data_ptr<scalar_t>(),
                      sin.data_ptr<scalar_t>(), b, t, heads, d, false);
    });
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["heads"] = heads;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &cos = saved[0], &sin = saved[1];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const torch::Tensor g = grads[0].contiguous();
    const int64_t b = g.size(0), t = g.size(2), d = g.size(3);
    torch::Tensor dx = torch::empty({b, t, heads * d}, g.options());
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "rope_backward", [&] {
      Apply<scalar_t>(g.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), cos.data_ptr<scalar_t>(),
                      sin.data_ptr<scalar_t>(), b, t, heads, d, true);
    });
    return {dx, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// --- SwiGLU
// ---------------------------------------------------------------------------------------

struct SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate_in,
                               const torch::Tensor& up_in) {
    const torch::Tensor gate = gate_in.contiguous(), up = up_in.contiguous();
    torch::Tensor sig = torch::sigmoid(gate);  // ATen's vectorised exp
    torch::Tensor y = torch::empty_like(gate);
    const int64_t n = gate.numel();
    AT_DISPATCH_FLOATING_TYPES(gate.scalar_type(), "swiglu_forward", [&] {
      const scalar_t* g = gate.data_ptr<scalar_t>();
      const scalar_t* u = up.data_ptr<scalar_t>();
      const scalar_t* s = sig.data_ptr<scalar_t>();
      scalar_t* o = y.data_ptr<scalar_t>();
      at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) o[i] = g[i] * s[i] * u[i];
      });
    });
    ctx->save_for_backward({gate, up, sig});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &gate = saved[0], &up = saved[1], &sig = saved[2];
    const torch::Tensor dy = grads[0].contiguous();
    const bool need_g = ctx->needs_input_grad(0), need_u = ctx->needs_input_grad(1);
    torch::Tensor dg = need_g ? torch::empty_like(gate) : torch::Tensor();
    torch::Tensor du = need_u ? torch::empty_like(up) : torch::Tensor();
    const int64_t n = gate.numel();
    AT_DISPATCH_FLOATING_TYPES(gate.scalar_type(), "swiglu_backward", [&] {
      const scalar_t* g = gate.data_ptr<scalar_t>();
      const scalar_t* u = up.data_ptr<scalar_t>();
      const scalar_t* s = sig.data_ptr<scalar_t>();
      const scalar_t* d = dy.data_ptr<scalar_t>();
      scalar_t* dgp = need_g ? dg.data_ptr<scalar_t>() : nullptr;
      scalar_t* dup = need_u ? du.data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          // silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
          if (dgp) dgp[i] = d[i] * u[i] * (s[i] * (1 + g[i] * (1 - s[i])));
          if (dup) dup[i] = d[i] * (g[i] * s[i]);
        }
      });
    });
    return {dg, du};
  }
};

}  // namespace

torch::Tensor RmsNormReference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  // As HF: the statistics in float32, the result back in the input dtype.
  torch::Tensor h = x.to(torch::kFloat);
  if (x.scalar_type() == torch::kDouble) h = x;
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

torch::Tensor RmsNormForward(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (!adapters::GemmCovers(x) || weight.scalar_type() != x.scalar_type()) {
    return RmsNormReference(x, weight, eps);
  }
  return RmsNormFunction::apply(x, weight, eps);
}

torch::Tensor RopeReference(const torch::Tensor& x, const torch::Tensor& cos,
                            const torch::Tensor& sin, int64_t heads) {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2) / heads, half = d / 2;
  torch::Tensor q = x.view({b, t, heads, d}).transpose(1, 2);
  torch::Tensor rotated = torch::cat({-q.narrow(-1, half, half), q.narrow(-1, 0, half)}, -1);
  return (q * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)).contiguous();
}

torch::Tensor RopeForward(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, int64_t heads) {
  if (!adapters::GemmCovers(x) || cos.scalar_type() != x.scalar_type() ||
      x.size(2) / heads % 2 != 0) {
    return RopeReference(x, cos, sin, heads);
  }
  return RopeFunction::apply(x, cos, sin, heads);
}

torch::Tensor SwiGluReference(const torch::Tensor& gate, const torch::Tensor& up) {
  return torch::nn::functional::silu(gate) * up;
}

torch::Tensor SwiGluForward(const torch::Tensor& gate, const torch::Tensor& up) {
  if (!adapters::GemmCovers(gate) || up.scalar_type() != gate.scalar_type() ||
      !gate.sizes().equals(up.sizes())) {
    return SwiGluReference(gate, up);
  }
  return SwiGluFunction::apply(gate, up);
}

}  // namespace peftd::model
