// What a decoder's attention needs of a batch, apart from the tokens: each token's position, the
// additive causal mask (block-diagonal for a packed row), and the hints AttentionCore's causal
// schedule takes. The same arithmetic as the LLaMA decoder (worker/model/llama.cc) builds inline.
#ifndef PEFTD_WORKER_MODEL_CAUSAL_MASK_H_
#define PEFTD_WORKER_MODEL_CAUSAL_MASK_H_

#include <torch/torch.h>

namespace peftd::model {

struct CausalMask {
  torch::Tensor positions;  // (B, T) int64: real tokens counted from 0 (or position_ids)
  torch::Tensor mask;       // (B, T, T) additive, in the dtype of `options`
  // No sequence starts with padding and the CPU GEMM path applies (AttentionCore's `causal`).
  bool every_row_sees_a_key = false;
  // (B, T) int64 on the CPU for a packed batch or one with right padding (MarkRightPadding),
  // else undefined.
  torch::Tensor first_key;
};

// input_ids (B, T); attention_mask (B, T) with 1 for real tokens (undefined = all real). A packed
// batch gives position_ids and sequence_ids (B, T) (train::Batch): positions restart at every
// record and a query sees only keys of its own record. `hidden` is the embedding output (its
// dtype and device are the mask's, and AttentionCore's GEMM path is judged on it).
CausalMask BuildCausalMask(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                           const torch::Tensor& position_ids, const torch::Tensor& sequence_ids,
                           const torch::Tensor& hidden);

// `first_key` (B, T, or undefined = every query's record starts at 0) with the positions after
// each sequence's last real token marked as right padding for AttentionCore (first key =
// position + 1: those queries see no key and skip their attention); `real` (B, T) is 1 for real
// tokens. Returns first_key itself when there is no padding.
torch::Tensor MarkRightPadding(const torch::Tensor& real, const torch::Tensor& first_key);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_CAUSAL_MASK_H_
