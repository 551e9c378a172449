// Scaled dot-product attention with grouped KV heads as one autograd node, for CPU training.
//
// The ATen composition (matmul, scale, mask add, softmax, matmul, transpose) spends most of its
// time in LibTorch's CPU bmm, which runs small batched GEMMs several times below the machine's
// GEMM rate, and in five full passes over the (B, H, T, T) scores. This node works per (batch,
// KV head): one GEMM gives the scores of the G query heads that share the KV head with the
// scale and the additive mask folded in (addmm), softmax runs in place on that block, and the
// outputs land directly in (B, T, H·D), so no transposed copy follows. The backward is the
// closed form: dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = s·dS·K, dK = s·dSᵀ·Q.
#ifndef PEFTD_WORKER_MODEL_ATTENTION_CORE_H_
#define PEFTD_WORKER_MODEL_ATTENTION_CORE_H_

#include <torch/torch.h>

namespace peftd::model {

// q (B, H, T, D), k and v (B, KV, T, D) with H a multiple of KV (query head h uses KV head
// h / (H / KV), HF's repeat_kv order); mask additive (B, T, T) (0 where a query sees a key, the
// dtype's lowest value elsewhere). Returns (B, T, H·D) = softmax(q·kᵀ·scale + mask)·v.
// `causal` promises that the mask hides every later key (mask[b, t, j] is lowest for j > t) and
// that every row sees at least one key (a row that sees none attends uniformly to all keys, later
// ones included); blocks above the diagonal are then skipped: the same result for about 60% of
// the GEMM work at T = 128.
// `first_key` (B, T) int64 on the CPU, with `causal` only: the first key each query may see (the
// start of its record in a packed row; non-decreasing along T), with the mask hiding every
// earlier key. The GEMMs then skip keys before a block's first record too, so a row of short
// records costs about the sum of their own causal triangles.
torch::Tensor AttentionCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, double scale, bool causal = false,
                            const torch::Tensor& first_key = {});

// The same with ATen ops and autograd (the reference of the tests, and the path for devices and
// dtypes AttentionCore does not cover).
torch::Tensor AttentionCoreReference(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& mask,
                                     double scale);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_ATTENTION_CORE_H_
