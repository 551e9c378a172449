// Summed next-token cross-entropy of a frozen vocabulary projection, as one autograd node that
// never holds more than 128 MB of logits: rows go through in chunks (at least 256 rows), each
// chunk's logits become softmax − one-hot in place, and the gradient of the hidden states is
// accumulated right away (the loss is the end of the graph, so its gradient is known up to the
// scalar that backward multiplies in). On a 32k vocabulary this replaces about eight passes
// over a 100+ MB tensor (log_softmax, nll, their backwards, the copies of the row selection).
#ifndef PEFTD_WORKER_MODEL_LM_HEAD_LOSS_H_
#define PEFTD_WORKER_MODEL_LM_HEAD_LOSS_H_

#include <torch/torch.h>

namespace peftd::model {

// Σ_i −log softmax(hidden_i · weightᵀ)[targets_i] over rows with targets_i ≠ −100; hidden
// (N, H), weight (V, H) without gradient, targets (N) int64. A scalar. chunk_rows > 0 sets the
// rows per chunk (tests); 0 chooses it from the vocabulary size.
torch::Tensor LmHeadCrossEntropySum(const torch::Tensor& hidden, const torch::Tensor& weight,
                                    const torch::Tensor& targets, int64_t chunk_rows = 0);

// The same through F::linear and F::cross_entropy (the tests' reference, and the path for other
// devices and dtypes).
torch::Tensor LmHeadCrossEntropySumReference(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_LM_HEAD_LOSS_H_
