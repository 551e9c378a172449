#include "worker/model/attention_core.h"

#include <ATen/Parallel.h>

#include "adapters/cpu_gemm.h"

namespace peftd::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Shapes {
  int64_t b, h, kv, g, t, d;
};

Shapes ShapesOf(const torch::Tensor& q, const torch::Tensor& k) {
  Shapes s{q.size(0), q.size(1), k.size(1), q.size(1) / k.size(1), q.size(2), q.size(3)};
  return s;
}

// Query rows per block of the causal schedule: a block of rows [r0, r1) sees keys [0, r1) only,
// so the GEMMs skip the upper triangle of blocks (entries there are the mask's lowest value in
// the scores, exactly zero in the probabilities, and need no work either way).
constexpr int64_t kCausalBlock = 32;

// The first key of every query row (B·T int64): `first_key` when given with the causal schedule,
// else 0 (every key from the first).
torch::Tensor FirstKeys(const torch::Tensor& first_key, const Shapes& s, bool causal) {
  if (causal && first_key.defined() && first_key.numel() == s.b * s.t) {
    return first_key.to(torch::kLong).cpu().contiguous().view({s.b * s.t});
  }
  return torch::zeros({s.b * s.t}, torch::kLong);
}

// One past the last query row that may see a key before `c1`: rows from there on start their
// records at c1 or later (first keys are non-decreasing along the row).
int64_t LastRow(const int64_t* first_key, int64_t t, int64_t c1) {
  int64_t r = c1;
  while (r < t && first_key[r] < c1) ++r;
  return r;
}

struct AttentionFunction : public torch::autograd::Function<AttentionFunction> {
  // Every (batch, KV head) block is a handful of row-major GEMMs on raw pointers (cpu_gemm.h);
  // the softmax and its backward run once over all blocks. Query head h = kv·G + g: its (T, D)
  // rows of q are contiguous, its output columns in (B, T, H·D) have row stride H·D.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in,
                               const torch::Tensor& mask_in, double scale, bool causal,
                               const torch::Tensor& first_key_in) {
    const torch::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const Shapes s = ShapesOf(q, k);
    const int64_t rows = s.g * s.t, hd = s.h * s.d, t = s.t, d = s.d;
    const int64_t block = causal ? kCausalBlock : t;
    const torch::Tensor first_key = FirstKeys(first_key_in, s, causal);
    const int64_t* fk = first_key.data_ptr<int64_t>();
    torch::Tensor out = torch::empty({s.b, t, hd}, q.options());
    // scores = mask + scale·Q·Kᵀ: the mask, repeated for the G query heads of every KV head,
    // is the GEMM's C operand.
    torch::Tensor probs = mask_in.reshape({s.b, 1, 1, t, t})
                              .expand({s.b, s.kv, s.g, t, t})
                              .contiguous()
                              .view({s.b, s.kv, rows, t});
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_forward", [&] {
      using T = scalar_t;
      const T* qp = q.data_ptr<T>();
      const T* kp = k.data_ptr<T>();
      const T* vp = v.data_ptr<T>();
      T* pp = probs.data_ptr<T>();
      T* op = out.data_ptr<T>();
      at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t bi = i / s.kv, kv = i % s.kv;
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const T* qg = qp + (bi * s.h + kv * s.g + gi) * t * d;
            T* pg = pp + (i * rows + gi * t) * t;
            for (int64_t r0 = 0; r0 < t; r0 += block) {
              const int64_t r1 = std::min(t, r0 + block), keys = causal ? r1 : t;
              const int64_t k0 = fk[bi * t + r0];
              adapters::Gemm(false, true, r1 - r0, keys - k0, d, static_cast<T>(scale), qg + r0 * d,
                             d, kp + (i * t + k0) * d, d, T(1), pg + r0 * t + k0, t);
            }
          }
        }
      });
      at::_softmax_out(probs, probs, -1, false);
      at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t bi = i / s.kv, kv = i % s.kv;
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const T* pg = pp + (i * rows + gi * t) * t;
            T* og = op + bi * t * hd + (kv * s.g + gi) * d;
            for (int64_t r0 = 0; r0 < t; r0 += block) {
              const int64_t r1 = std::min(t, r0 + block), keys = causal ? r1 : t;
              const int64_t k0 = fk[bi * t + r0];
              adapters::Gemm(false, false, r1 - r0, d, keys - k0, T(1), pg + r0 * t + k0, t,
                             vp + (i * t + k0) * d, d, T(0), og + r0 * hd, hd);
            }
          }
        }
      });
    });
    ctx->save_for_backward({q, k, v, probs, first_key});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["causal"] = causal;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &probs = saved[3];
    const int64_t* fk = saved[4].data_ptr<int64_t>();
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool causal = ctx->saved_data["causal"].toBool();
    const torch::Tensor dout = grads[0].contiguous();
    const Shapes s = ShapesOf(q, k);
    const int64_t rows = s.g * s.t, hd = s.h * s.d, t = s.t, d = s.d;
    const int64_t block = causal ? kCausalBlock : t;
    const bool need_q = ctx->needs_input_grad(0), need_k = ctx->needs_input_grad(1),
               need_v = ctx->needs_input_grad(2);
    torch::Tensor dq = need_q ? torch::empty_like(q) : torch::Tensor();
    torch::Tensor dk = need_k ? torch::empty_like(k) : torch::Tensor();
    torch::Tensor dv = need_v ? torch::empty_like(v) : torch::Tensor();
    // Skipped blocks of dP stay zero (their probabilities are zero, so dS is too).
    torch::Tensor dp = (need_q || need_k)
                           ? (causal ? torch::zeros_like(probs) : torch::empty_like(probs))
                           : torch::Tensor();
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_backward", [&] {
      using T = scalar_t;
      const T* qp = q.data_ptr<T>();
      const T* kp = k.data_ptr<T>();
      const T* vp = v.data_ptr<T>();
      const T* pp = probs.data_ptr<T>();
      const T* gp = dout.data_ptr<T>();
      // dV = Σ_g P_gᵀ·dO_g (key block [c0, c1) gets rows [c0, last) only: the rows of the
      // records that hold those keys) and dP_g = dO_g·Vᵀ.
      at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t bi = i / s.kv, kv = i % s.kv;
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const T* dog = gp + bi * t * hd + (kv * s.g + gi) * d;
            const T* pg = pp + (i * rows + gi * t) * t;
            for (int64_t c0 = 0; c0 < t; c0 += block) {
              const int64_t c1 = std::min(t, c0 + block), first = causal ? c0 : 0;
              const int64_t last = LastRow(fk + bi * t, t, c1);
              if (need_v) {
                adapters::Gemm(true, false, c1 - c0, d, last - first, T(1), pg + first * t + c0, t,
                               dog + first * hd, hd, gi == 0 ? T(0) : T(1),
                               dv.data_ptr<T>() + (i * t + c0) * d, d);
              }
              if (need_q || need_k) {
                // c0..c1 as a block of query rows here.
                const int64_t keys = causal ? c1 : t, k0 = fk[bi * t + c0];
                adapters::Gemm(false, true, c1 - c0, keys - k0, d, T(1), dog + c0 * hd, hd,
                               vp + (i * t + k0) * d, d, T(0),
                               dp.data_ptr<T>() + (i * rows + gi * t + c0) * t + k0, t);
              }
            }
          }
        }
      });
      if (!need_q && !need_k) return;
      // dS = P ⊙ (dP − rowsum(dP ⊙ P)), then dQ = s·dS·K and dK = s·dSᵀ·Q.
      const torch::Tensor ds = at::_softmax_backward_data(dp, probs, -1, probs.scalar_type());
      const T* dsp = ds.data_ptr<T>();
      at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t bi = i / s.kv, kv = i % s.kv;
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const int64_t q_offset = (bi * s.h + kv * s.g + gi) * t * d;
            const T* dsg = dsp + (i * rows + gi * t) * t;
            for (int64_t c0 = 0; c0 < t; c0 += block) {
              const int64_t c1 = std::min(t, c0 + block), first = causal ? c0 : 0;
              const int64_t keys = causal ? c1 : t, k0 = fk[bi * t + c0];
              if (need_q) {
                adapters::Gemm(false, false, c1 - c0, d, keys - k0, static_cast<T>(scale),
                               dsg + c0 * t + k0, t, kp + (i * t + k0) * d, d, T(0),
                               dq.data_ptr<T>() + q_offset + c0 * d, d);
              }
              if (need_k) {
                const int64_t last = LastRow(fk + bi * t, t, c1);
                adapters::Gemm(true, false, c1 - c0, d, last - first, static_cast<T>(scale),
                               dsg + first * t + c0, t, qp + q_offset + first * d, d,
                               gi == 0 ? T(0) : T(1), dk.data_ptr<T>() + (i * t + c0) * d, d);
              }
            }
          }
        }
      });
    });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor AttentionCoreReference(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& mask,
                                     double scale) {
  const Shapes s = ShapesOf(q, k);
  // The G query heads of a KV head folded into the rows of one matmul (no repeat_kv copy).
  torch::Tensor qf = q.reshape({s.b, s.kv, s.g * s.t, s.d});
  torch::Tensor scores = torch::matmul(qf, k.transpose(-1, -2)).mul_(scale);
  scores = scores.view({s.b, s.kv, s.g, s.t, s.t}).add_(mask.view({s.b, 1, 1, s.t, s.t}));
  torch::Tensor probs = torch::softmax(scores, -1).view({s.b, s.kv, s.g * s.t, s.t});
  return torch::matmul(probs, v)
      .view({s.b, s.h, s.t, s.d})
      .transpose(1, 2)
      .reshape({s.b, s.t, s.h * s.d});
}

torch::Tensor AttentionCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, double scale, bool causal,
                            const torch::Tensor& first_key) {
  if (!adapters::GemmCovers(q)) return AttentionCoreReference(q, k, v, mask, scale);
  return AttentionFunction::apply(
      q, k, v, mask, scale, causal,
      first_key.defined() ? first_key : torch::empty({0}, torch::kLong));
}

}  // namespace peftd::model
