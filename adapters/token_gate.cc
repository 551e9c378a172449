#include "adapters/token_gate.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "adapters/cpu_gemm.h"
#include "adapters/linear_ops.h"
#include "adapters/tensor_check.h"

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kNormFloor = 1e-12;  // METHODS.md: guard ‖base_i‖

// h = base + S ⊙ Δ, with a backward that gives Δ the gradient of the tokens that are on only and
// hands μ_i = Σ_j (∂L/∂h_ij)·Δ_ij of every token to the gate.
struct GateFunction : public torch::autograd::Function<GateFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& base,
                               const torch::Tensor& delta, const torch::Tensor& on,
                               const torch::Tensor& mask, int64_t gate) {
    ctx->save_for_backward({delta, on, mask});
    ctx->saved_data["gate"] = gate;
    return torch::addcmul(base, delta, on.unsqueeze(-1));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& delta = saved[0];
    const torch::Tensor& on = saved[1];
    const torch::Tensor& mask = saved[2];
    const torch::Tensor& g = grads[0];
    auto* gate = reinterpret_cast<TokenGate*>(ctx->saved_data["gate"].toInt());
    gate->AccumulateBackward((g * delta).sum(-1), on, mask);
    return {g, g * on.unsqueeze(-1), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor ZeroScalar() { return torch::zeros({}, torch::kDouble); }

// The 0-dim double counters are read and written through their data: an ATen op for each would
// be several dispatches per module and step.
double& Value(const torch::Tensor& scalar) { return *scalar.data_ptr<double>(); }

// The same node for CPU float32/float64 as one loop each way: r_i, S_i, h and the sparsity counts
// in the forward; μ_i, g and both gradients in the backward (what GateFunction does in about
// thirty ATen kernels per module and step).
struct FusedGateFunction : public torch::autograd::Function<FusedGateFunction> {
  // With `from_output`, the second input is the wrapped method's whole output M'(x) (HUT,
  // AdaDHP: they do not build on the base) and Δ = M'(x) − base is formed here, instead of by a
  // subtraction node before the gate; the gradients are the same: on·g to M'(x), (1 − on)·g to
  // the base, which is what base's g plus Δ's −on·g summed to.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& base_in,
                               const torch::Tensor& delta_in, const torch::Tensor& mask_in,
                               int64_t gate_ptr, double tau, bool training_window, bool counts,
                               int64_t sequence_length, const torch::Tensor* sequence_ids,
                               bool from_output) {
    const torch::Tensor base = base_in.contiguous();
    torch::Tensor delta = delta_in.contiguous();
    const torch::Tensor mask = mask_in.contiguous();
    if (from_output) {
      torch::Tensor diff = torch::empty_like(base);
      AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "token_gate_delta", [&] {
        const scalar_t *o = delta.data_ptr<scalar_t>(), *b = base.data_ptr<scalar_t>();
        scalar_t* dd = diff.data_ptr<scalar_t>();
        for (int64_t i = 0, n = base.numel(); i < n; ++i) dd[i] = o[i] - b[i];
      });
      delta = diff;
    }
    // Packed rows: a sequence ends where the record number changes; else every sequence_length.
    // `sequence_ids`, when given, is contiguous int64 (GateContext::FlatSequenceIds); by pointer
    // because a custom Function of LibTorch 1.13 refuses undefined tensor inputs.
    // Rows of any leading shape: the caller's (B, T, out) needs no reshape node each way.
    const int64_t d = base.size(-1), n = d > 0 ? base.numel() / d : 0;
    const int64_t* sid =
        sequence_ids && sequence_ids->numel() == n ? sequence_ids->data_ptr<int64_t>() : nullptr;
    torch::Tensor h = torch::empty_like(base);
    torch::Tensor on = torch::empty({n}, base.options());
    double on_real = 0, real = 0;
    // Per sequence (TS-PEFT eq. 23): the sum of the sequences' sparsities and their number.
    double sequence_sum = 0, sequences = 0, on_in_sequence = 0, real_in_sequence = 0;
    AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "token_gate_forward", [&] {
      const scalar_t* bp = base.data_ptr<scalar_t>();
      const scalar_t* dp = delta.data_ptr<scalar_t>();
      const scalar_t* mp = mask.data_ptr<scalar_t>();
      scalar_t* hp = h.data_ptr<scalar_t>();
      scalar_t* op = on.data_ptr<scalar_t>();
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t* b = bp + i * d;
        const scalar_t* dl = dp + i * d;
        double nb = 0, nd = 0;
        for (int64_t j = 0; j < d; ++j) {
          nb += static_cast<double>(b[j]) * b[j];
          nd += static_cast<double>(dl[j]) * dl[j];
        }
        const double ratio = std::sqrt(nd) / std::max(std::sqrt(nb), kNormFloor);
        const bool is_on = ratio >= tau;
        op[i] = is_on ? 1 : 0;
        scalar_t* hr = hp + i * d;
        if (is_on) {
          for (int64_t j = 0; j < d; ++j) hr[j] = b[j] + dl[j];
        } else {
          for (int64_t j = 0; j < d; ++j) hr[j] = b[j];
        }
        on_real += (is_on ? 1.0 : 0.0) * mp[i];
        real += mp[i];
        on_in_sequence += (is_on ? 1.0 : 0.0) * mp[i];
        real_in_sequence += mp[i];
        const bool sequence_ends =
            sid ? (i + 1 == n || sid[i + 1] != sid[i]) : (i + 1) % sequence_length == 0;
        if (sequence_ends) {
          if (real_in_sequence > 0) {
            sequence_sum += 1.0 - on_in_sequence / real_in_sequence;
            sequences += 1;
          }
          on_in_sequence = real_in_sequence = 0;
        }
      }
    });
    auto* gate = reinterpret_cast<TokenGate*>(gate_ptr);
    if (counts) gate->AddCounts(on_real, real, sequence_sum, sequences, training_window);
    ctx->save_for_backward({delta, on, mask});
    ctx->saved_data["gate"] = gate_ptr;
    ctx->saved_data["from_output"] = from_output;
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &delta = saved[0], &on = saved[1], &mask = saved[2];
    const bool from_output = ctx->saved_data["from_output"].toBool();
    auto* gate = reinterpret_cast<TokenGate*>(ctx->saved_data["gate"].toInt());
    const torch::Tensor g = grads[0].contiguous();
    const int64_t d = delta.size(-1), n = d > 0 ? delta.numel() / d : 0;
    torch::Tensor ddelta = torch::empty_like(delta);
    torch::Tensor dbase = from_output ? torch::empty_like(delta) : g;
    torch::Tensor mu = torch::empty({n}, delta.options());
    const double lambda = gate->options().lambda;
    double g_tau = 0;
    AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "token_gate_backward", [&] {
      const scalar_t* gp = g.data_ptr<scalar_t>();
      const scalar_t* dp = delta.data_ptr<scalar_t>();
      const scalar_t* onp = on.data_ptr<scalar_t>();
      const scalar_t* mp = mask.data_ptr<scalar_t>();
      scalar_t* ddp = ddelta.data_ptr<scalar_t>();
      scalar_t* dbp = from_output ? dbase.data_ptr<scalar_t>() : nullptr;
      scalar_t* mup = mu.data_ptr<scalar_t>();
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t* gr = gp + i * d;
        const scalar_t* dl = dp + i * d;
        scalar_t* dd = ddp + i * d;
        scalar_t m = 0;
        for (int64_t j = 0; j < d; ++j) m += gr[j] * dl[j];
        mup[i] = m;
        const bool is_on = onp[i] > 0;
        if (is_on) {
          for (int64_t j = 0; j < d; ++j) dd[j] = gr[j];
        } else {
          for (int64_t j = 0; j < d; ++j) dd[j] = 0;
        }
        if (dbp) {
          scalar_t* db = dbp + i * d;
          if (is_on) {
            for (int64_t j = 0; j < d; ++j) db[j] = 0;
          } else {
            for (int64_t j = 0; j < d; ++j) db[j] = gr[j];
          }
        }
        // 1{(μ ≥ 0) == (r ≥ τ)}·μ + 1(r ≥ τ)·λ, padding excluded (METHODS.md).
        const double agree = ((m >= 0) == is_on) ? 1.0 : 0.0;
        g_tau += (agree * m + (is_on ? lambda : 0.0)) * mp[i];
      }
    });
    gate->AddBackward(mu, g_tau);
    return {dbase,           ddelta,          torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

TokenGate::TokenGate(std::shared_ptr<Adapter> inner, GateOptions options,
                     std::shared_ptr<GateContext> context)
    : inner_(register_module("inner", std::move(inner))),
      options_(options),
      context_(std::move(context)),
      g_accum_(ZeroScalar()) {
  train_.Reset();
  eval_.Reset();
}

torch::Tensor GateContext::FlatMask(int64_t tokens, const torch::TensorOptions& options) {
  const bool given = token_mask.defined() && token_mask.numel() == tokens;
  const bool cached =
      mask_flat_.defined() && mask_flat_.numel() == tokens &&
      mask_flat_.scalar_type() == options.dtype().toScalarType() &&
      mask_flat_.device() == options.device() &&
      (given ? mask_source_.defined() &&
                   mask_source_.unsafeGetTensorImpl() == token_mask.unsafeGetTensorImpl() &&
                   mask_version_ == token_mask._version()
             : !mask_source_.defined());
  if (!cached) {
    mask_source_ = given ? token_mask : torch::Tensor();
    mask_version_ = given ? token_mask._version() : 0;
    mask_flat_ = given ? token_mask.reshape({tokens}).to(options).contiguous()
                       : torch::ones({tokens}, options);
  }
  return mask_flat_;
}

const torch::Tensor* GateContext::FlatSequenceIds(int64_t tokens) {
  if (!sequence_ids.defined() || sequence_ids.numel() != tokens) return nullptr;
  if (!ids_source_.defined() ||
      ids_source_.unsafeGetTensorImpl() != sequence_ids.unsafeGetTensorImpl() ||
      ids_version_ != sequence_ids._version()) {
    ids_source_ = sequence_ids;
    ids_version_ = sequence_ids._version();
    ids_flat_ = sequence_ids.reshape({tokens}).to(torch::kLong).cpu().contiguous();
  }
  return &ids_flat_;
}

void TokenGate::Window::Reset() {
  // In place: data-parallel training holds these tensors (TrainWindowCounters) to sum them.
  if (!on.defined()) {
    on = ZeroScalar();
    total = ZeroScalar();
    sequence_sum = ZeroScalar();
    sequences = ZeroScalar();
  }
  Value(on) = Value(total) = Value(sequence_sum) = Value(sequences) = 0;
}

TokenGate::Sparsity TokenGate::Window::Read() const {
  Sparsity out;
  const double tokens = Value(total);
  if (tokens > 0) out.per_token = 1.0 - Value(on) / tokens;
  const double n = Value(sequences);
  if (n > 0) out.per_sequence = Value(sequence_sum) / n;
  return out;
}

torch::Tensor TokenGate::TokenMask(int64_t tokens, const torch::TensorOptions& options) const {
  if (context_) return context_->FlatMask(tokens, options);
  return torch::ones({tokens}, options);
}

torch::Tensor TokenGate::SequenceIds(int64_t tokens) const {
  const torch::Tensor* ids = context_ ? context_->FlatSequenceIds(tokens) : nullptr;
  return ids ? *ids : torch::empty({0}, torch::kLong);
}

int64_t TokenGate::SequenceLength(const torch::Tensor& x, int64_t tokens) const {
  int64_t t = tokens;
  if (context_ && context_->token_mask.defined() && context_->token_mask.dim() == 2 &&
      context_->token_mask.numel() == tokens) {
    t = context_->token_mask.size(1);
  } else if (x.dim() >= 3) {
    t = x.size(-2);
  }
  return std::max<int64_t>(t, 1);
}

void TokenGate::AddWindow(const torch::Tensor& on_real, const torch::Tensor& real,
                          const torch::Tensor& sequence_sparsity_sum,
                          const torch::Tensor& sequences, bool training_window) {
  Window& w = training_window ? train_ : eval_;
  w.on.add_(on_real.to(torch::kDouble).cpu());
  w.total.add_(real.to(torch::kDouble).cpu());
  w.sequence_sum.add_(sequence_sparsity_sum.to(torch::kDouble).cpu());
  w.sequences.add_(sequences.to(torch::kDouble).cpu());
}

torch::Tensor TokenGate::Forward(const torch::Tensor& x, const torch::Tensor& weight,
                                 const torch::Tensor& bias) {
  return FromBase(x, FrozenLinear(x, weight, bias), weight, bias);
}

torch::Tensor TokenGate::FromBase(const torch::Tensor& x, const torch::Tensor& base_in,
                                  const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto out_shape = OutputShape(x, weight.size(0));
  torch::Tensor on, mask;
  // Training statistics come from forwards that will be backpropagated; the rest is evaluation.
  const bool training_window = is_training() && torch::GradMode::is_enabled();
  torch::Tensor x2d, base, delta;
  if (GemmCovers(base_in) && base_in.dim() >= 1 && base_in.size(-1) == weight.size(0) &&
      base_in.sizes().slice(0, base_in.dim() - 1) == x.sizes().slice(0, x.dim() - 1)) {
    // The fused node takes the rows in the shape they come in: no reshape or view node around
    // the base, the change or the output (two or three per module and step each way).
    // A method that does not build on the base (HUT, AdaDHP) hands over its whole output: its
    // Delta would be that output minus the base, one more node each way.
    const bool from_output = !inner_->UsesBase();
    delta =
        from_output ? inner_->Forward(x, weight, bias) : inner_->Delta(x, base_in, weight, bias);
    if (delta.scalar_type() == base_in.scalar_type() && delta.sizes() == base_in.sizes()) {
      const int64_t rows = base_in.numel() / weight.size(0);
      mask = TokenMask(rows, base_in.options());
      return FusedGateFunction::apply(base_in, delta, mask, reinterpret_cast<int64_t>(this), tau_,
                                      training_window, inner_->IsActive(), SequenceLength(x, rows),
                                      context_ ? context_->FlatSequenceIds(rows) : nullptr,
                                      from_output);
    }
    if (from_output) delta = delta - base_in;
    base = base_in.reshape({-1, weight.size(0)});
    delta = delta.reshape({-1, weight.size(0)});
  } else {
    x2d = x.reshape({-1, x.size(-1)});
    base = base_in.reshape({-1, weight.size(0)});
    delta = inner_->Delta(x2d, base, weight, bias);
  }
  {
    torch::NoGradGuard no_grad;
    torch::Tensor ratio = delta.norm(2, -1) / base.norm(2, -1).clamp_min(kNormFloor);
    on = ratio.ge(tau_).to(base.scalar_type());
    mask = TokenMask(on.size(0), on.options());
    const bool counts = inner_->IsActive();  // AdaLoRA at rank 0 / pruned AdaDHP: left out
    if (counts) {
      const int64_t t = SequenceLength(x, on.size(0));
      torch::Tensor on_seq, real_seq;
      const torch::Tensor sequence_ids = SequenceIds(on.size(0));
      if (sequence_ids.numel() == on.size(0) && on.size(0) > 0) {
        // Packed rows: sums per record.
        const torch::Tensor index = sequence_ids.to(on.device());
        const int64_t records = index.max().item<int64_t>() + 1;
        const auto options = on.options().dtype(torch::kDouble);
        on_seq =
            torch::zeros({records}, options).index_add_(0, index, (on * mask).to(torch::kDouble));
        real_seq = torch::zeros({records}, options).index_add_(0, index, mask.to(torch::kDouble));
      } else {
        on_seq = (on * mask).to(torch::kDouble).view({-1, t}).sum(1);
        real_seq = mask.to(torch::kDouble).view({-1, t}).sum(1);
      }
      torch::Tensor has_tokens = real_seq.gt(0);
      // Sequences of padding only have no sparsity (TS-PEFT eq. 23 averages over samples).
      torch::Tensor seq_sparsity = torch::where(has_tokens, 1.0 - on_seq / real_seq.clamp_min(1.0),
                                                torch::zeros_like(real_seq));
      AddWindow(on_seq.sum(), real_seq.sum(), seq_sparsity.sum(), has_tokens.sum(),
                training_window);
    }
  }
  torch::Tensor h;
  if (torch::GradMode::is_enabled() && (base.requires_grad() || delta.requires_grad())) {
    h = GateFunction::apply(base, delta, on, mask, reinterpret_cast<int64_t>(this));
  } else {
    h = torch::addcmul(base, delta, on.unsqueeze(-1));
  }
  return h.view(out_shape);
}

torch::Tensor TokenGate::Delta(const torch::Tensor& x, const torch::Tensor& base,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
  return Forward(x, weight, bias) - base;
}

void TokenGate::AccumulateBackward(const torch::Tensor& mu, const torch::Tensor& on,
                                   const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;
  last_mu_ = mu.detach().clone();
  torch::Tensor on_bool = on.gt(0);
  // 1{(μ ≥ 0) == (r ≥ τ)}·μ + 1(r ≥ τ)·λ, padding excluded (METHODS.md).
  torch::Tensor agree = mu.ge(0).eq(on_bool).to(mu.scalar_type());
  torch::Tensor g = (agree * mu + on * options_.lambda) * mask;
  g_accum_.add_(g.sum().to(torch::kDouble).cpu());
}

void TokenGate::AddCounts(double on_real, double real, double sequence_sparsity_sum,
                          double sequences, bool training_window) {
  Window& w = training_window ? train_ : eval_;
  Value(w.on) += on_real;
  Value(w.total) += real;
  Value(w.sequence_sum) += sequence_sparsity_sum;
  Value(w.sequences) += sequences;
}

void TokenGate::AddBackward(torch::Tensor mu, double g) {
  last_mu_ = std::move(mu);
  Value(g_accum_) += g;
}

double TokenGate::PendingTauGradient() const { return Value(g_accum_); }

void TokenGate::UpdateTau() {
  const double g = Value(g_accum_);
  Value(g_accum_) = 0;
  ++k_;
  m_ = options_.beta1 * m_ + (1 - options_.beta1) * g;
  v_ = options_.beta2 * v_ + (1 - options_.beta2) * g * g;
  const double m_hat = m_ / (1 - std::pow(options_.beta1, static_cast<double>(k_)));
  const double v_hat = v_ / (1 - std::pow(options_.beta2, static_cast<double>(k_)));
  tau_ += options_.alpha * options_.s * m_hat / (std::sqrt(v_hat) + options_.eps);
}

TokenGate::Sparsity TokenGate::TakeTrainSparsity() {
  const Sparsity out = train_.Read();
  train_.Reset();
  return out;
}

void TokenGate::BeginEval() { eval_.Reset(); }

TokenGate::Sparsity TokenGate::EvalSparsity() const { return eval_.Read(); }

std::pair<torch::Tensor, torch::Tensor> TokenGate::Merged(const torch::Tensor&,
                                                          const torch::Tensor&) const {
  TORCH_CHECK(false, "a token-gated adapter cannot be merged into W0");
}

std::pair<torch::Tensor, torch::Tensor> TokenGate::Unmerged(const torch::Tensor&,
                                                            const torch::Tensor&) const {
  TORCH_CHECK(false, "a token-gated adapter cannot be merged into W0");
}

std::map<std::string, torch::Tensor> TokenGate::StateDict() const {
  return {{"tau", torch::tensor({tau_}, torch::kDouble)},
          {"tau_m", torch::tensor({m_}, torch::kDouble)},
          {"tau_v", torch::tensor({v_}, torch::kDouble)},
          {"tau_k", torch::tensor({k_}, torch::kInt64)},
          {"tau_g", g_accum_.reshape({1}).clone()}};
}

absl::Status TokenGate::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  for (const char* key : {"tau", "tau_m", "tau_v", "tau_k", "tau_g"}) {
    if (!state.count(key))
      return absl::InvalidArgumentError(absl::StrCat("gate state: missing ", key));
  }
  tau_ = state.at("tau").item<double>();
  m_ = state.at("tau_m").item<double>();
  v_ = state.at("tau_v").item<double>();
  k_ = state.at("tau_k").item<int64_t>();
  g_accum_.fill_(state.at("tau_g").item<double>());
  return absl::OkStatus();
}

}  // namespace peftd::adapters
