#include "worker/model/attention_core.h"

#include <ATen/Parallel.h>

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

// The (T, D) block of query head `head` inside an output laid out (B, T, H·D): row stride H·D.
torch::Tensor HeadColumns(const torch::Tensor& out_b, int64_t head, int64_t d) {
  return out_b.narrow(1, head * d, d);
}

struct AttentionFunction : public torch::autograd::Function<AttentionFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in,
                               const torch::Tensor& mask_in, double scale) {
    const torch::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const torch::Tensor mask = mask_in.contiguous();
    const Shapes s = ShapesOf(q, k);
    torch::Tensor out = torch::empty({s.b, s.t, s.h * s.d}, q.options());
    // Probabilities of every (batch, KV head): the G query heads' rows stacked, (G·T, T).
    torch::Tensor probs = torch::empty({s.b, s.kv, s.g * s.t, s.t}, q.options());
    // The mask of every batch row repeated for the G query heads of a KV head: (B, G·T, T).
    const torch::Tensor mask_rows =
        s.g == 1 ? mask
                 : mask.unsqueeze(1).expand({s.b, s.g, s.t, s.t}).reshape({s.b, s.g * s.t, s.t});
    at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t bi = i / s.kv, kv = i % s.kv;
        const torch::Tensor qg = q[bi].narrow(0, kv * s.g, s.g).view({s.g * s.t, s.d});
        const torch::Tensor kk = k[bi][kv], vv = v[bi][kv];
        torch::Tensor p = probs[bi][kv];
        // scores = mask + scale·Q·Kᵀ, the mask repeated for the G heads.
        const torch::Tensor m =
            mask[bi].unsqueeze(0).expand({s.g, s.t, s.t}).reshape({s.g * s.t, s.t});
        at::addmm_out(p, m, qg, kk.t(), /*beta=*/1, /*alpha=*/scale);
        at::_softmax_out(p, p, -1, false);
        torch::Tensor out_b = out[bi];
        for (int64_t gi = 0; gi < s.g; ++gi) {
          torch::Tensor o = HeadColumns(out_b, kv * s.g + gi, s.d);
          at::mm_out(o, p.narrow(0, gi * s.t, s.t), vv);
        }
      }
    });
    ctx->save_for_backward({q, k, v, probs});
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &probs = saved[3];
    const double scale = ctx->saved_data["scale"].toDouble();
    const torch::Tensor dout = grads[0].contiguous();
    const Shapes s = ShapesOf(q, k);
    const bool need_q = ctx->needs_input_grad(0), need_k = ctx->needs_input_grad(1),
               need_v = ctx->needs_input_grad(2);
    torch::Tensor dq = need_q ? torch::empty_like(q) : torch::Tensor();
    torch::Tensor dk = need_k ? torch::empty_like(k) : torch::Tensor();
    torch::Tensor dv = need_v ? torch::empty_like(v) : torch::Tensor();
    at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
      torch::Tensor dp = torch::empty({s.g * s.t, s.t}, q.options());
      for (int64_t i = begin; i < end; ++i) {
        const int64_t bi = i / s.kv, kv = i % s.kv;
        const torch::Tensor p = probs[bi][kv];
        const torch::Tensor kk = k[bi][kv], vv = v[bi][kv];
        const torch::Tensor dout_b = dout[bi];
        if (need_v) {
          torch::Tensor dvv = dv[bi][kv];
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const torch::Tensor dog = HeadColumns(dout_b, kv * s.g + gi, s.d);
            const torch::Tensor pg = p.narrow(0, gi * s.t, s.t);
            if (gi == 0) {
              at::mm_out(dvv, pg.t(), dog);
            } else {
              dvv.addmm_(pg.t(), dog);
            }
          }
        }
        if (!need_q && !need_k) continue;
        for (int64_t gi = 0; gi < s.g; ++gi) {
          torch::Tensor dpg = dp.narrow(0, gi * s.t, s.t);
          at::mm_out(dpg, HeadColumns(dout_b, kv * s.g + gi, s.d), vv.t());
        }
        const torch::Tensor ds = at::_softmax_backward_data(dp, p, -1, p.scalar_type());
        if (need_q) {
          torch::Tensor dqg = dq[bi].narrow(0, kv * s.g, s.g).view({s.g * s.t, s.d});
          at::addmm_out(dqg, dqg, ds, kk, /*beta=*/0, /*alpha=*/scale);
        }
        if (need_k) {
          const torch::Tensor qg = q[bi].narrow(0, kv * s.g, s.g).view({s.g * s.t, s.d});
          torch::Tensor dkk = dk[bi][kv];
          at::addmm_out(dkk, dkk, ds.t(), qg, /*beta=*/0, /*alpha=*/scale);
        }
      }
    });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor()};
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
                            const torch::Tensor& mask, double scale) {
  const auto dtype = q.scalar_type();
  const bool covered = q.device().is_cpu() && (dtype == torch::kFloat || dtype == torch::kDouble);
  if (!covered) return AttentionCoreReference(q, k, v, mask, scale);
  return AttentionFunction::apply(q, k, v, mask, scale);
}

}  // namespace peftd::model
