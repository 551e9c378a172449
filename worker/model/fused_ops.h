// The LLaMA block's elementwise parts as single autograd nodes with hand-written CPU loops:
// RMSNorm, RoPE (which also lays q and k out as (B, heads, T, D) for attention) and SwiGLU.
// Written with ATen ops these are 6 to 12 kernels each way, and on a small model every kernel's
// dispatch and autograd bookkeeping costs more than its arithmetic. Each function falls back to
// the ATen composition (the reference of the tests) off the CPU or for dtypes other than
// float32 and float64.
#ifndef PEFTD_WORKER_MODEL_FUSED_OPS_H_
#define PEFTD_WORKER_MODEL_FUSED_OPS_H_

#include <torch/torch.h>

namespace peftd::model {

// weight ⊙ x / sqrt(mean(x², last dim) + eps), statistics in float32 or better (HF's RMSNorm).
torch::Tensor RmsNormForward(const torch::Tensor& x, const torch::Tensor& weight, double eps);
torch::Tensor RmsNormReference(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// x (B, T, heads·D) → (B, heads, T, D) with rotary embedding: x·cos + rotate_half(x)·sin, where
// cos and sin are (B, T, D) and rotate_half(x) = cat(−x[D/2:], x[:D/2]).
torch::Tensor RopeForward(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, int64_t heads);
torch::Tensor RopeReference(const torch::Tensor& x, const torch::Tensor& cos,
                            const torch::Tensor& sin, int64_t heads);

// silu(gate) ⊙ up.
torch::Tensor SwiGluForward(const torch::Tensor& gate, const torch::Tensor& up);
torch::Tensor SwiGluReference(const torch::Tensor& gate, const torch::Tensor& up);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_FUSED_OPS_H_
