#include "worker/model/lm_head_loss.h"

#include "adapters/cpu_gemm.h"

namespace peftd::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace F = torch::nn::functional;

constexpr int64_t kIgnoreIndex = -100;
// Logits of one chunk: at most 128 MB, and at least 256 rows, so the vocabulary GEMM keeps a tall
// left operand (every chunk repacks the whole (V, H) weight; 65-row chunks of a 32k vocabulary
// made that a tenth of a 100M model's step).
constexpr int64_t kChunkBytes = int64_t{128} << 20;
constexpr int64_t kMinChunkRows = 256;

int64_t ChunkRows(int64_t vocab, int64_t element_size) {
  return std::max(kMinChunkRows, kChunkBytes / (vocab * element_size));
}

struct LmHeadLossFunction : public torch::autograd::Function<LmHeadLossFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden_in,
                               const torch::Tensor& weight, const torch::Tensor& targets_in,
                               bool with_grad, int64_t chunk) {
    const torch::Tensor hidden = hidden_in.contiguous(), targets = targets_in.contiguous();
    const int64_t n = hidden.size(0), v = weight.size(0);
    torch::Tensor loss = torch::zeros({}, hidden.options().dtype(torch::kDouble));
    torch::Tensor dhidden = with_grad ? torch::empty_like(hidden) : torch::Tensor();
    const bool any_ignored = targets.eq(kIgnoreIndex).any().item<bool>();
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t rows = std::min(chunk, n - start);
      const torch::Tensor h = hidden.narrow(0, start, rows);
      const torch::Tensor t = targets.narrow(0, start, rows);
      torch::Tensor valid, safe = t.unsqueeze(1);
      if (any_ignored) {
        valid = t.ne(kIgnoreIndex).to(hidden.scalar_type());
        safe = t.clamp_min(0).unsqueeze(1);
      }
      torch::Tensor logits = at::mm(h, weight.t());
      const torch::Tensor lse = logits.logsumexp(1, /*keepdim=*/true);
      const torch::Tensor picked = logits.gather(1, safe);
      torch::Tensor row_loss = (lse - picked).squeeze(1);
      if (any_ignored) row_loss.mul_(valid);
      loss.add_(row_loss.sum().to(torch::kDouble));
      if (!with_grad) continue;
      // d loss / d logits = softmax − one-hot, zero for ignored rows.
      torch::Tensor dlogits = logits.sub_(lse).exp_();
      dlogits.scatter_add_(1, safe, torch::full_like(picked, -1));
      if (any_ignored) dlogits.mul_(valid.unsqueeze(1));
      torch::Tensor dh = dhidden.narrow(0, start, rows);
      at::mm_out(dh, dlogits, weight);
    }
    if (with_grad) ctx->save_for_backward({dhidden});
    return loss.to(hidden.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor dhidden = ctx->get_saved_variables()[0];
    return {dhidden * grads[0], torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LmHeadCrossEntropySumReference(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets) {
  return F::cross_entropy(F::linear(hidden, weight), targets,
                          F::CrossEntropyFuncOptions().reduction(torch::kSum));
}

torch::Tensor LmHeadCrossEntropySum(const torch::Tensor& hidden, const torch::Tensor& weight,
                                    const torch::Tensor& targets, int64_t chunk_rows) {
  const bool covered = adapters::GemmCovers(hidden) &&
                       weight.scalar_type() == hidden.scalar_type() && !weight.requires_grad();
  if (!covered) return LmHeadCrossEntropySumReference(hidden, weight, targets);
  const bool with_grad = torch::GradMode::is_enabled() && hidden.requires_grad();
  const int64_t chunk =
      chunk_rows > 0 ? chunk_rows : ChunkRows(weight.size(0), hidden.element_size());
  return LmHeadLossFunction::apply(hidden, weight, targets, with_grad, chunk);
}

}  // namespace peftd::model
