#include "worker/model/attention_core.h"

#include <ATen/Parallel.h>

#include <vector>

#include "adapters/block_gemm.h"
#include "adapters/cpu_gemm.h"
#include "worker/model/attention_rows.h"

namespace peftd::model {
namespace {

using adapters::BlockGemm;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// t query rows, tk keys (t = tk but for an encoder's last layer that needs its first queries).
struct Shapes {
  int64_t b, h, kv, g, t, d, tk;
};

Shapes ShapesOf(const torch::Tensor& q, const torch::Tensor& k) {
  Shapes s{q.size(0), q.size(1), k.size(1), q.size(1) / k.size(1), q.size(2), q.size(3), k.size(2)};
  return s;
}

// How the mask is laid out: none (every key up to the padding is seen), one additive row of keys
// per sequence (B, Tk) shared by its queries, or (B, T, Tk).
enum MaskKind : int64_t { kNoMask = 0, kKeyMask = 1, kFullMask = 2 };

MaskKind KindOf(const torch::Tensor& mask) {
  if (!mask.defined() || mask.numel() == 0) return kNoMask;
  return mask.dim() == 2 ? kKeyMask : kFullMask;
}

// The mask's rows for query rows from r0, keys from `first`, and their row stride (0: one row
// of keys for every query).
template <typename T>
const T* MaskAt(const T* mp, MaskKind kind, const Shapes& s, int64_t bi, int64_t r0, int64_t first,
                int64_t* ldm) {
  *ldm = kind == kFullMask ? s.tk : 0;
  if (kind == kNoMask) return nullptr;
  return kind == kKeyMask ? mp + bi * s.tk + first : mp + (bi * s.t + r0) * s.tk + first;
}

// Query rows per block: a block's scores, (rows × visible keys), live in a scratch buffer of the
// thread that runs it (32 × T floats) instead of a (B, H, T, T) tensor. With the causal schedule
// a block of rows [r0, r1) sees keys [first key of r0, r1) only, so neither the GEMMs nor the
// softmax touch the blocks above the diagonal or before the block's first record.
constexpr int64_t kBlock = 32;

// The first key of every position (B·Tk int64): `first_key` when given, else 0 (every key from
// the first). Without the causal schedule only its mark of the right padding is read.
torch::Tensor FirstKeys(const torch::Tensor& first_key, const Shapes& s) {
  if (first_key.defined() && first_key.numel() == s.b * s.tk) {
    return first_key.to(torch::kLong).cpu().contiguous().view({s.b * s.tk});
  }
  return torch::zeros({s.b * s.tk}, torch::kLong);
}

// The positions of every sequence before its right padding (B int64): the positions from which
// on each one's first key lies past it. Before that, every query must see a key.
torch::Tensor RowsOf(const torch::Tensor& first_key, const Shapes& s) {
  torch::Tensor rows = torch::empty({s.b}, torch::kLong);
  const int64_t* fk = first_key.data_ptr<int64_t>();
  for (int64_t bi = 0; bi < s.b; ++bi) {
    const int64_t* row = fk + bi * s.tk;
    int64_t r = s.tk;
    while (r > 0 && row[r - 1] > r - 1) --r;
    for (int64_t j = 0; j < r; ++j) {
      TORCH_CHECK(row[j] >= 0 && row[j] <= j && (j == 0 || row[j] >= row[j - 1]),
                  "AttentionCore: first_key[", bi, ", ", j, "] = ", row[j],
                  ": before the right padding, first keys must be non-decreasing and at most "
                  "their own position");
    }
    rows.data_ptr<int64_t>()[bi] = r;
  }
  return rows;
}

// x (t × d) row-major into xt (d × t): the keys (and values) as the B operand of the score GEMM,
// whose vectorised dimension is the keys.
template <typename T>
void Transpose(const T* x, int64_t t, int64_t d, T* xt) {
  for (int64_t j = 0; j < t; ++j) {
    for (int64_t c = 0; c < d; ++c) xt[c * t + j] = x[j * d + c];
  }
}

// The keys a block of query rows [r0, r1) may see: [first, end); `len` positions of the sequence
// precede its right padding (which no query sees).
struct KeyRange {
  int64_t first, end;
};

KeyRange KeysOf(const int64_t* first_key, int64_t len, int64_t r0, int64_t r1, bool causal) {
  return causal ? KeyRange{first_key[r0], r1} : KeyRange{0, len};
}

struct AttentionFunction : public torch::autograd::Function<AttentionFunction> {
  // Per (batch, KV head), serially over its G query heads and their blocks of kBlock query rows
  // (so the dK and dV of a KV head have one writer): S = scale·Q·Kᵀ into the scratch, the mask's
  // visible part added and the softmax taken row by row (attention_rows.h), O = P·V straight into
  // (B, T, H·D), each product a register-tiled loop (block_gemm.h; K and V transposed once per
  // KV head so that the keys are the vectorised dimension of the score products). Only each
  // row's maximum and log-sum-exp are kept for the backward, which
  // computes the block's probabilities again (a GEMM with D = head_dim and one exp per score:
  // cheaper on this CPU than writing and re-reading (B, H, T, T) probabilities).
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in,
                               const torch::Tensor& mask_in, double scale, bool causal,
                               const torch::Tensor& first_key_in) {
    const torch::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const Shapes s = ShapesOf(q, k);
    const int64_t hd = s.h * s.d, t = s.t, tk = s.tk, d = s.d;
    const MaskKind kind = KindOf(mask_in);
    const torch::Tensor mask = kind == kNoMask ? torch::empty({0}, q.options())
                               : kind == kKeyMask
                                   ? mask_in.to(q.scalar_type()).reshape({s.b, tk}).contiguous()
                                   : mask_in.to(q.scalar_type()).reshape({s.b, t, tk}).contiguous();
    const torch::Tensor first_key = FirstKeys(first_key_in, s);
    const int64_t* fk = first_key.data_ptr<int64_t>();
    const torch::Tensor lengths = RowsOf(first_key, s);
    const int64_t* len = lengths.data_ptr<int64_t>();
    torch::Tensor out = torch::empty({s.b, t, hd}, q.options());
    // [0]: each query row's maximum score, [1]: log Σ exp(score − maximum); (B, H, T) each.
    torch::Tensor stats = torch::empty({2, s.b, s.h, t}, q.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_forward", [&] {
      using T = scalar_t;
      const T* qp = q.data_ptr<T>();
      const T* kp = k.data_ptr<T>();
      const T* vp = v.data_ptr<T>();
      const T* mp = mask.data_ptr<T>();
      T* op = out.data_ptr<T>();
      T* row_max = stats.data_ptr<T>();
      T* log_sum = row_max + s.b * s.h * t;
      at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> scores(static_cast<size_t>(kBlock * tk)), kt(static_cast<size_t>(d * tk));
        for (int64_t i = begin; i < end; ++i) {
          const int64_t bi = i / s.kv, kv = i % s.kv, rows_end = std::min(len[bi], t);
          const T* kb = kp + i * tk * d;
          const T* vb = vp + i * tk * d;
          Transpose(kb, tk, d, kt.data());
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const int64_t h = kv * s.g + gi, row0 = (bi * s.h + h) * t;
            const T* qg = qp + row0 * d;
            T* og = op + bi * t * hd + h * d;
            for (int64_t r = rows_end; r < t; ++r) std::fill_n(og + r * hd, d, T(0));
            for (int64_t r0 = 0; r0 < rows_end; r0 += kBlock) {
              const int64_t r1 = std::min(rows_end, r0 + kBlock), rows = r1 - r0;
              const KeyRange keys = KeysOf(fk + bi * tk, len[bi], r0, r1, causal);
              const int64_t n = keys.end - keys.first;
              int64_t ldm = 0;
              const T* m = MaskAt(mp, kind, s, bi, r0, keys.first, &ldm);
              BlockGemm(rows, n, d, static_cast<T>(scale), qg + r0 * d, d, 1,
                        kt.data() + keys.first, tk, T(0), scores.data(), n);
              SoftmaxRows(scores.data(), n, rows, n, m, ldm, row_max + row0 + r0,
                          log_sum + row0 + r0);
              BlockGemm(rows, d, n, T(1), scores.data(), n, 1, vb + keys.first * d, d, T(0),
                        og + r0 * hd, hd);
            }
          }
        }
      });
    });
    ctx->save_for_backward({q, k, v, mask, out, stats, first_key, lengths});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["mask_kind"] = static_cast<int64_t>(kind);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &mask = saved[3],
                        &out = saved[4], &stats = saved[5];
    const int64_t* fk = saved[6].data_ptr<int64_t>();
    const int64_t* len = saved[7].data_ptr<int64_t>();
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool causal = ctx->saved_data["causal"].toBool();
    const auto kind = static_cast<MaskKind>(ctx->saved_data["mask_kind"].toInt());
    const torch::Tensor dout = grads[0].contiguous();
    const Shapes s = ShapesOf(q, k);
    const int64_t hd = s.h * s.d, t = s.t, tk = s.tk, d = s.d;
    const bool need_q = ctx->needs_input_grad(0), need_k = ctx->needs_input_grad(1),
               need_v = ctx->needs_input_grad(2), need_scores = need_q || need_k;
    // dK and dV gather every query block that sees a key: they start at zero.
    torch::Tensor dq = need_q ? torch::empty_like(q) : torch::Tensor();
    for (int64_t bi = 0; need_q && bi < s.b; ++bi) {
      const int64_t rows_end = std::min(len[bi], t);
      dq[bi].narrow(1, rows_end, t - rows_end).zero_();
    }
    torch::Tensor dk = need_k ? torch::zeros_like(k) : torch::Tensor();
    torch::Tensor dv = need_v ? torch::zeros_like(v) : torch::Tensor();
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_backward", [&] {
      using T = scalar_t;
      const T* qp = q.data_ptr<T>();
      const T* kp = k.data_ptr<T>();
      const T* vp = v.data_ptr<T>();
      const T* mp = mask.data_ptr<T>();
      const T* op = out.data_ptr<T>();
      const T* gp = dout.data_ptr<T>();
      const T* row_max = stats.data_ptr<T>();
      const T* log_sum = row_max + s.b * s.h * t;
      T* dqp = need_q ? dq.data_ptr<T>() : nullptr;
      T* dkp = need_k ? dk.data_ptr<T>() : nullptr;
      T* dvp = need_v ? dv.data_ptr<T>() : nullptr;
      at::parallel_for(0, s.b * s.kv, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> probs(static_cast<size_t>(kBlock * tk));
        std::vector<T> dp(need_scores ? static_cast<size_t>(kBlock * tk) : 0);
        std::vector<T> kt(static_cast<size_t>(d * tk)),
            vt(need_scores ? static_cast<size_t>(d * tk) : 0);
        T delta[kBlock];
        for (int64_t i = begin; i < end; ++i) {
          const int64_t bi = i / s.kv, kv = i % s.kv, rows_end = std::min(len[bi], t);
          Transpose(kp + i * tk * d, tk, d, kt.data());
          if (need_scores) Transpose(vp + i * tk * d, tk, d, vt.data());
          for (int64_t gi = 0; gi < s.g; ++gi) {
            const int64_t h = kv * s.g + gi, row0 = (bi * s.h + h) * t;
            const T* qg = qp + row0 * d;
            const T* dog = gp + bi * t * hd + h * d;
            const T* og = op + bi * t * hd + h * d;
            for (int64_t r0 = 0; r0 < rows_end; r0 += kBlock) {
              const int64_t r1 = std::min(rows_end, r0 + kBlock), rows = r1 - r0;
              const KeyRange keys = KeysOf(fk + bi * tk, len[bi], r0, r1, causal);
              const int64_t n = keys.end - keys.first, kv_row = i * tk + keys.first;
              int64_t ldm = 0;
              const T* m = MaskAt(mp, kind, s, bi, r0, keys.first, &ldm);
              BlockGemm(rows, n, d, static_cast<T>(scale), qg + r0 * d, d, 1,
                        kt.data() + keys.first, tk, T(0), probs.data(), n);
              ProbsFromLse(probs.data(), n, rows, n, m, ldm, row_max + row0 + r0,
                           log_sum + row0 + r0);
              // dV[keys] += Pᵀ·dO.
              if (need_v) {
                BlockGemm(n, d, rows, T(1), probs.data(), 1, n, dog + r0 * hd, hd, T(1),
                          dvp + kv_row * d, d);
              }
              if (!need_scores) continue;
              // dS = P ⊙ (dP − dO·O) with dP = dO·Vᵀ; dQ = s·dS·K, dK[keys] += s·dSᵀ·Q.
              for (int64_t r = 0; r < rows; ++r) {
                T sum = 0;
                for (int64_t j = 0; j < d; ++j)
                  sum += dog[(r0 + r) * hd + j] * og[(r0 + r) * hd + j];
                delta[r] = sum;
              }
              BlockGemm(rows, n, d, T(1), dog + r0 * hd, hd, 1, vt.data() + keys.first, tk, T(0),
                        dp.data(), n);
              SoftmaxGradRows(dp.data(), n, probs.data(), n, rows, n, delta);
              if (need_q) {
                BlockGemm(rows, d, n, static_cast<T>(scale), dp.data(), n, 1, kp + kv_row * d, d,
                          T(0), dqp + (row0 + r0) * d, d);
              }
              if (need_k) {
                BlockGemm(n, d, rows, static_cast<T>(scale), dp.data(), 1, n, qg + r0 * d, d, T(1),
                          dkp + kv_row * d, d);
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
  torch::Tensor scores =
      torch::matmul(qf, k.transpose(-1, -2)).mul_(scale).view({s.b, s.kv, s.g, s.t, s.tk});
  const MaskKind kind = KindOf(mask);
  if (kind != kNoMask) {
    scores = scores.add_(kind == kKeyMask ? mask.view({s.b, 1, 1, 1, s.tk})
                                          : mask.view({s.b, 1, 1, s.t, s.tk}));
  }
  torch::Tensor probs = torch::softmax(scores, -1).view({s.b, s.kv, s.g * s.t, s.tk});
  return torch::matmul(probs, v)
      .view({s.b, s.h, s.t, s.d})
      .transpose(1, 2)
      .reshape({s.b, s.t, s.h * s.d});
}

torch::Tensor AttentionCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, double scale, bool causal,
                            const torch::Tensor& first_key) {
  TORCH_CHECK(q.size(2) == k.size(2) || (!causal && q.size(2) < k.size(2)),
              "AttentionCore: ", q.size(2), " queries for ", k.size(2),
              " keys (fewer queries only without the causal schedule)");
  if (!adapters::GemmCovers(q)) return AttentionCoreReference(q, k, v, mask, scale);
  // Autograd's inputs must be defined tensors: an empty one stands for no mask.
  return AttentionFunction::apply(
      q, k, v, mask.defined() ? mask : torch::empty({0}, q.options()), scale, causal,
      first_key.defined() ? first_key : torch::empty({0}, torch::kLong));
}

}  // namespace peftd::model
