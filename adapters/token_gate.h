// The token gate `_S` (METHODS.md "The token gate"; TS-PEFT, arXiv 2511.16147) around any method:
// one threshold τ per module (init 0), and for every token i
//   r_i = ‖Δ_i‖ / max(‖base_i‖, 1e-12),  S_i = 1[r_i ≥ τ],  h_i = base_i + S_i·Δ_i,
// where Δ = M(x) is the wrapped method's change. The adapter learns only from tokens that are on;
// τ gets no autograd gradient. A custom backward computes μ_i = Σ_j (∂L/∂h_ij)·Δ_ij for every
// token, and once per optimizer step τ moves by an Adam-style step on
//   g = Σ_i [1{(μ_i ≥ 0) == (r_i ≥ τ)}·μ_i + 1(r_i ≥ τ)·λ]   over the step's non-padding tokens.
#ifndef PEFTD_ADAPTERS_TOKEN_GATE_H_
#define PEFTD_ADAPTERS_TOKEN_GATE_H_

#include <memory>

#include "adapters/linear.h"

namespace peftd::adapters {

struct GateOptions {
  double s = 4e-5;       // τ's step size
  double lambda = 1e-6;  // sparsity pressure per token that is on
  // Adam constants of the τ update [ours].
  double alpha = 1.0;
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-8;
};

// Shared by every gate of a model: which tokens of the current batch are real. The trainer sets
// `token_mask` ((B, T), 1 = real token) before each forward; undefined means every token is real.
struct GateContext {
  torch::Tensor token_mask;
  // Packed batches: (B, T) int64, the record of every token, numbered in row-major order (see
  // train::Batch). Per-sequence sparsity is then per record. Undefined: one sequence per row.
  torch::Tensor sequence_ids;

  // token_mask flattened to (tokens) in `options`' dtype and device, all ones when it is undefined
  // or has another size. Converted once per batch for every gate of the model: the result is
  // cached while token_mask stays the same tensor, unmodified (its version counter).
  torch::Tensor FlatMask(int64_t tokens, const torch::TensorOptions& options);
  // sequence_ids flattened to (tokens) int64 on the CPU, or nullptr when undefined or of another
  // size; cached the same way.
  const torch::Tensor* FlatSequenceIds(int64_t tokens);

 private:
  torch::Tensor mask_source_, mask_flat_;  // the source is held so its address cannot be reused
  torch::Tensor ids_source_, ids_flat_;
  uint32_t mask_version_ = 0, ids_version_ = 0;
};

class TokenGate : public Adapter {
 public:
  TokenGate(std::shared_ptr<Adapter> inner, GateOptions options,
            std::shared_ptr<GateContext> context);

  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) override;
  // The gated output from the base output (the inner method must use it: UsesBase()).
  bool UsesBase() const override { return inner_->UsesBase(); }
  torch::Tensor FromBase(const torch::Tensor& x, const torch::Tensor& base,
                         const torch::Tensor& weight, const torch::Tensor& bias) override;
  // The gated change S ⊙ Δ.
  torch::Tensor Delta(const torch::Tensor& x, const torch::Tensor& base,
                      const torch::Tensor& weight, const torch::Tensor& bias) override;
  std::string Method() const override { return inner_->Method(); }
  std::map<std::string, torch::Tensor> ExportTensors() const override {
    return inner_->ExportTensors();
  }
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors) override {
    return inner_->ImportTensors(tensors);
  }
  bool Mergeable() const override { return false; }
  std::pair<torch::Tensor, torch::Tensor> Merged(const torch::Tensor& weight,
                                                 const torch::Tensor& bias) const override;
  std::pair<torch::Tensor, torch::Tensor> Unmerged(const torch::Tensor& weight,
                                                   const torch::Tensor& bias) const override;
  // τ is not counted: it is not a parameter the optimizer trains.
  int64_t NumTrainable() const override { return inner_->NumTrainable(); }
  bool IsActive() const override { return inner_->IsActive(); }

  // The τ update of METHODS.md from what the backward passes accumulated since the last call.
  // Call once per optimizer step, after the adapter's own step.
  void UpdateTau();
  double tau() const { return tau_; }
  void set_tau(double tau) { tau_ = tau; }
  // g accumulated so far in this step (before UpdateTau consumes it).
  double PendingTauGradient() const;
  // The 0-dim double accumulators behind PendingTauGradient and the training window's sparsity
  // (tokens on, real tokens, Σ sequence sparsity, sequences), updated in place: data-parallel
  // training sums them over ranks.
  torch::Tensor tau_gradient_accumulator() const { return g_accum_; }
  std::vector<torch::Tensor> TrainWindowCounters() const {
    return {train_.on, train_.total, train_.sequence_sum, train_.sequences};
  }

  // Sparsity over a window, padding excluded. `per_sequence` is the paper's (TS-PEFT eq. 23):
  // 1 − (tokens on)/(tokens) of each sequence, averaged over the window's sequences; `per_token`
  // pools the tokens first, 1 − Σ on / Σ tokens, so long sequences weigh more. They differ when
  // lengths vary. The training window is read and reset by TakeTrainSparsity; the evaluation
  // window by BeginEval / EvalSparsity. Both −1 when the window saw no token.
  struct Sparsity {
    double per_sequence = -1;
    double per_token = -1;
  };
  Sparsity TakeTrainSparsity();
  void BeginEval();
  Sparsity EvalSparsity() const;

  const std::shared_ptr<Adapter>& inner() const { return inner_; }
  const GateOptions& options() const { return options_; }
  // μ of the most recent backward pass, per token (N); for tests and diagnostics.
  const torch::Tensor& last_mu() const { return last_mu_; }

  // τ, its Adam moments and step count.
  std::map<std::string, torch::Tensor> StateDict() const;
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

  // Called from the custom backward.
  void AccumulateBackward(const torch::Tensor& mu, const torch::Tensor& on,
                          const torch::Tensor& mask);
  // The fused CPU node's share of the same bookkeeping, already summed: tokens on and real tokens
  // of a forward, the sum of its sequences' sparsities and how many sequences had a real token;
  // μ and g of a backward.
  void AddCounts(double on_real, double real, double sequence_sparsity_sum, double sequences,
                 bool training_window);
  void AddBackward(torch::Tensor mu, double g);

 private:
  torch::Tensor TokenMask(int64_t tokens, const torch::TensorOptions& options) const;
  // Tokens per sequence of a forward over `tokens` tokens: the token mask's row length, else the
  // input's second-to-last dimension ((B, T, in)), else all of them (one sequence).
  int64_t SequenceLength(const torch::Tensor& x, int64_t tokens) const;
  // The record of every token of a packed batch (N) int64 on the CPU, else an empty tensor.
  torch::Tensor SequenceIds(int64_t tokens) const;
  // Adds one forward's counts to the training or the evaluation window.
  void AddWindow(const torch::Tensor& on_real, const torch::Tensor& real,
                 const torch::Tensor& sequence_sparsity_sum, const torch::Tensor& sequences,
                 bool training_window);

  std::shared_ptr<Adapter> inner_;
  GateOptions options_;
  std::shared_ptr<GateContext> context_;
  double tau_ = 0.0;
  double m_ = 0.0, v_ = 0.0;
  int64_t k_ = 0;
  torch::Tensor g_accum_;  // 0-dim double
  // One window's 0-dim double counters: tokens on and real tokens; Σ over sequences of their
  // sparsity, and the number of sequences.
  struct Window {
    torch::Tensor on, total, sequence_sum, sequences;
    void Reset();
    Sparsity Read() const;
  };
  Window train_, eval_;
  torch::Tensor last_mu_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_TOKEN_GATE_H_
