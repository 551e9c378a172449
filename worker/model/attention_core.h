// Scaled dot-product attention with grouped KV heads as one autograd node, for CPU training.
//
// The ATen composition (matmul, scale, mask add, softmax, matmul, transpose) spends most of its
// time in LibTorch's CPU bmm, which runs small batched GEMMs several times below the machine's
// GEMM rate, and in five full passes over the (B, H, T, T) scores. This node works per (batch,
// KV head, block of 32 query rows): one GEMM gives the block's scores for the keys it may see
// (all of them, or with `causal` only those from its first record's start to its last row),
// the mask's part for those keys is added and the softmax taken in a per-thread scratch buffer,
// and a second GEMM writes the outputs directly in (B, T, H·D). No (B, H, T, T) tensor exists;
// the backward keeps only each row's maximum and log-sum-exp and computes a block's
// probabilities again from them: dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − dO·O), dQ = s·dS·K,
// dK = s·dSᵀ·Q, block by block.

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
// records costs about the sum of their own causal triangles. A query whose first key lies past it
// sees no key: that marks the row's right padding (first_key = position + 1 from some position
// to the end of the row; the mask hides those keys from every query). Those queries get output 0
// and no gradient instead of attending to the keys before them as the mask alone would say
// (nothing reads a padding position's output: it has no loss and no query sees it as a key); a
// row of 400 tokens padded to 512 skips a third of its attention so.
//
// Without `causal` (an encoder: every query sees every real key of its sequence) the mask may also
// be (B, Tk), one additive row of keys shared by all queries of a sequence, or undefined (no
// mask), so no (B, T, T) tensor is built; `first_key` is then read for its mark of the right
// padding only (MarkRightPadding over a row of zeros): the padding's keys are skipped by the GEMMs
// and its queries get output 0, exactly what a mask hiding those keys gives at the real positions.
// q may then also hold fewer rows than k and v (B, H, Tq, D with Tq < Tk): the first Tq queries of
// the sequence only, as the last layer of a classifier that reads its first token needs; the
// output is (B, Tq, H·D).
torch::Tensor AttentionCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& mask, double scale, bool causal = false,
                            const torch::Tensor& first_key = {});

// The same with ATen ops and autograd (the reference of the tests, and the path for devices and
// dtypes AttentionCore does not cover); it reads no first_key (padding queries attend as the mask
// says).
torch::Tensor AttentionCoreReference(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& mask,
                                     double scale);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_ATTENTION_CORE_H_
