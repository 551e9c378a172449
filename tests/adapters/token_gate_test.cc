// The token gate `_S` against METHODS.md, in double precision.
#include "adapters/token_gate.h"

#include <gtest/gtest.h>

#include <limits>

#include "adapters/adalora.h"
#include "adapters/dora.h"
#include "adapters/hut.h"
#include "adapters/lora.h"

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;
constexpr int64_t kIn = 6, kOut = 5, kTokens = 8;

struct Fixture {
  Linear base{kIn, kOut, true, torch::TensorOptions().dtype(torch::kDouble)};
  std::shared_ptr<LoraAdapter> lora;
  std::shared_ptr<TokenGate> gate;
  std::shared_ptr<GateContext> ctx = std::make_shared<GateContext>();
  explicit Fixture(GateOptions o = {}) {
    torch::NoGradGuard no_grad;
    base->weight.copy_(torch::randn({kOut, kIn}, torch::kDouble));
    base->bias.copy_(torch::randn({kOut}, torch::kDouble));
    lora = std::make_shared<LoraAdapter>(*base, LoraOptions{.r = 2, .alpha = 2});
    lora->lora_B.normal_();
    gate = std::make_shared<TokenGate>(lora, o, ctx);
  }
  torch::Tensor Plain(const torch::Tensor& x) { return F::linear(x, base->weight, base->bias); }
};

TEST(TokenGate, MinusInfinityEqualsTheUngatedMethod) {
  torch::manual_seed(1);
  Fixture f;
  torch::Tensor x = torch::randn({2, 4, kIn}, torch::kDouble);
  torch::Tensor ungated = f.lora->Forward(x, f.base->weight, f.base->bias);
  f.gate->set_tau(-std::numeric_limits<double>::infinity());
  f.base->Attach(f.gate, "adapter");
  EXPECT_TRUE(torch::allclose(f.base->forward(x), ungated, 1e-14, 1e-14));
  EXPECT_EQ(f.gate->Method(), "lora");
  EXPECT_FALSE(f.gate->Mergeable());
  EXPECT_FALSE(f.base->Merge().ok());
}

TEST(TokenGate, TauZeroAtInitLetsEveryTokenThrough) {
  torch::manual_seed(2);
  Fixture f;
  EXPECT_EQ(f.gate->tau(), 0.0);
  f.base->Attach(f.gate, "adapter");
  f.base->train();
  torch::Tensor x = torch::randn({kTokens, kIn}, torch::kDouble);
  f.base->forward(x);
  const TokenGate::Sparsity s = f.gate->TakeTrainSparsity();
  EXPECT_DOUBLE_EQ(s.per_sequence, 0.0);
  EXPECT_DOUBLE_EQ(s.per_token, 0.0);
}

TEST(TokenGate, OffTokensGiveExactlyTheBaseAndNoAdapterGradient) {
  torch::manual_seed(3);
  Fixture f;
  f.base->Attach(f.gate, "adapter");
  f.base->train();
  torch::Tensor x = torch::randn({kTokens, kIn}, torch::kDouble);
  torch::Tensor plain = f.Plain(x);
  torch::Tensor delta = f.lora->Delta(x, plain, f.base->weight, f.base->bias).detach();
  torch::Tensor ratio = delta.norm(2, -1) / plain.norm(2, -1);
  const double tau = std::get<0>(ratio.sort())[kTokens / 2].item<double>();  // half the tokens off
  f.gate->set_tau(tau);
  torch::Tensor on = ratio.ge(tau);
  torch::Tensor probe = torch::randn({kTokens, kOut}, torch::kDouble);
  torch::Tensor h = f.base->forward(x);
  for (int64_t i = 0; i < kTokens; ++i) {
    if (!on[i].item<bool>()) EXPECT_TRUE(torch::equal(h[i], plain[i])) << i;
  }
  // One sequence of kTokens tokens (a 2-D input): both figures agree.
  const TokenGate::Sparsity s = f.gate->TakeTrainSparsity();
  EXPECT_NEAR(s.per_sequence, 0.5, 1e-12);
  EXPECT_NEAR(s.per_token, 0.5, 1e-12);
  (h * probe).sum().backward();
  // Reference: autograd restricted to the tokens that are on.
  auto a = f.lora->lora_A.detach().clone().requires_grad_(true);
  auto b = f.lora->lora_B.detach().clone().requires_grad_(true);
  torch::Tensor onf = on.to(torch::kDouble).unsqueeze(1);
  torch::Tensor ref = plain + onf * F::linear(F::linear(x, a) * f.lora->scale(), b);
  (ref * probe).sum().backward();
  EXPECT_TRUE(torch::allclose(f.lora->lora_A.grad(), a.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(f.lora->lora_B.grad(), b.grad(), 1e-12, 1e-12));
  // μ_i = Σ_j (∂L/∂h_ij)·Δ_ij for every token, on or off; here ∂L/∂h = probe.
  EXPECT_TRUE(torch::allclose(f.gate->last_mu(), (probe * delta).sum(-1), 1e-12, 1e-12));
}

TEST(TokenGate, MuMatchesTheAutogradOutputGradientForDora) {
  torch::manual_seed(4);
  Linear base(kIn, kOut, true, torch::TensorOptions().dtype(torch::kDouble));
  {
    torch::NoGradGuard no_grad;
    base->weight.normal_();
    base->bias.normal_();
  }
  auto dora = std::make_shared<DoraAdapter>(*base, LoraOptions{.r = 2, .alpha = 2});
  {
    torch::NoGradGuard no_grad;
    dora->lora_B.normal_();
    dora->magnitude.mul_(1.3);
  }
  auto gate = std::make_shared<TokenGate>(dora, GateOptions{}, nullptr);
  base->Attach(gate, "adapter");
  base->train();
  torch::Tensor x = torch::randn({kTokens, kIn}, torch::kDouble);
  torch::Tensor h = base->forward(x);
  h.retain_grad();
  torch::Tensor loss = (h.pow(3)).sum();
  loss.backward();
  torch::Tensor plain = F::linear(x, base->weight, base->bias);
  torch::Tensor delta = dora->Delta(x, plain, base->weight, base->bias).detach();
  EXPECT_TRUE(torch::allclose(gate->last_mu(), (h.grad() * delta).sum(-1), 1e-12, 1e-12));
}

// HUT does not build on the base: the gate takes its whole output into the fused node (no
// subtraction node) on (B, T, in) rows as they come. Output, μ and every gradient (x through
// both the base and HUT, M_A, M_B, γ, β) against the ATen composition, half the tokens off.
TEST(TokenGate, GatedHutFromItsOutputMatchesTheComposition) {
  torch::manual_seed(11);
  Linear base(kIn, kOut, true, torch::TensorOptions().dtype(torch::kDouble));
  {
    torch::NoGradGuard no_grad;
    base->weight.normal_();
    base->bias.normal_();
  }
  auto hut = std::make_shared<HutAdapter>(*base, HutOptions{.r = 3});
  {
    torch::NoGradGuard no_grad;
    hut->hut_A.add_(torch::randn_like(hut->hut_A) * 0.5);
    hut->hut_B.add_(torch::randn_like(hut->hut_B) * 0.5);
    hut->hut_gamma.add_(torch::randn_like(hut->hut_gamma) * 0.3);
    hut->hut_beta.normal_();
  }
  auto ctx = std::make_shared<GateContext>();
  auto gate = std::make_shared<TokenGate>(hut, GateOptions{}, ctx);
  base->Attach(gate, "adapter");
  base->train();
  torch::Tensor x0 = torch::randn({2, 4, kIn}, torch::kDouble);
  // Reference, by ATen ops with their own leaves.
  auto xr = x0.clone().requires_grad_(true);
  auto a = hut->hut_A.detach().clone().requires_grad_(true);
  auto b = hut->hut_B.detach().clone().requires_grad_(true);
  auto g = hut->hut_gamma.detach().clone().requires_grad_(true);
  auto be = hut->hut_beta.detach().clone().requires_grad_(true);
  torch::Tensor plain = F::linear(xr, base->weight, base->bias);
  torch::Tensor full = g * (F::linear(xr * a.mean(1), base->weight) * b.mean(0) + base->bias) + be;
  torch::Tensor delta = full - plain;
  torch::Tensor ratio = (delta.norm(2, -1) / plain.norm(2, -1)).detach();
  torch::Tensor sorted = std::get<0>(ratio.reshape({-1}).sort());
  const double tau = (sorted[3].item<double>() + sorted[4].item<double>()) / 2;  // no tie
  gate->set_tau(tau);
  torch::Tensor on = ratio.ge(tau).to(torch::kDouble).unsqueeze(-1);
  ASSERT_EQ(on.sum().item<double>(), 4.0);
  torch::Tensor ref = plain + on * delta;
  torch::Tensor probe = torch::randn({2, 4, kOut}, torch::kDouble);
  (ref * probe).sum().backward();

  auto x = x0.clone().requires_grad_(true);
  torch::Tensor h = base->forward(x);
  ASSERT_EQ(h.sizes(), ref.sizes());
  EXPECT_TRUE(torch::allclose(h, ref.detach(), 1e-12, 1e-12));
  // The gate's node is the output's own (no view after it) and HUT's node feeds it directly.
  ASSERT_TRUE(h.grad_fn());
  EXPECT_NE(h.grad_fn()->name().find("FusedGateFunction"), std::string::npos)
      << h.grad_fn()->name();
  EXPECT_NE(h.grad_fn()->next_edges().at(1).function->name().find("HutLinearFunction"),
            std::string::npos)
      << h.grad_fn()->next_edges().at(1).function->name();
  (h * probe).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), xr.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(hut->hut_A.grad(), a.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(hut->hut_B.grad(), b.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(hut->hut_gamma.grad(), g.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(hut->hut_beta.grad(), be.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(gate->last_mu(), (probe * delta.detach()).sum(-1).reshape({-1}),
                              1e-12, 1e-12));
  const TokenGate::Sparsity s = gate->TakeTrainSparsity();
  EXPECT_NEAR(s.per_token, 0.5, 1e-12);
}

// One token, constructed so that its μ has a chosen sign; returns τ after one update.
double TauAfterOneStep(double mu_sign, bool on, double lambda) {
  Fixture f(GateOptions{.s = 1e-2, .lambda = lambda});
  f.base->Attach(f.gate, "adapter");
  f.base->train();
  torch::Tensor x = torch::randn({1, kIn}, torch::kDouble);
  torch::Tensor plain = f.Plain(x);
  torch::Tensor delta = f.lora->Delta(x, plain, f.base->weight, f.base->bias).detach();
  const double ratio = (delta.norm() / plain.norm()).item<double>();
  f.gate->set_tau(on ? ratio / 2 : ratio * 2);
  torch::Tensor h = f.base->forward(x);
  // L = mu_sign·Σ h·Δ → ∂L/∂h = mu_sign·Δ → μ = mu_sign·‖Δ‖² (harmful when > 0).
  (h * delta).sum().mul(mu_sign).backward();
  const double before = f.gate->tau();
  f.gate->UpdateTau();
  return f.gate->tau() - before;
}

TEST(TokenGate, TauMovesInTheDocumentedDirection) {
  torch::manual_seed(5);
  EXPECT_GT(TauAfterOneStep(+1, /*on=*/true, 0), 0) << "a harmful modification raises τ";
  EXPECT_LT(TauAfterOneStep(-1, /*on=*/false, 0), 0) << "a helpful gated-off token lowers τ";
  EXPECT_EQ(TauAfterOneStep(-1, /*on=*/true, 0), 0) << "a helpful token that is on leaves τ";
  EXPECT_EQ(TauAfterOneStep(+1, /*on=*/false, 0), 0) << "a harmful token that is off leaves τ";
  EXPECT_GT(TauAfterOneStep(0, /*on=*/true, 1e-3), 0) << "λ > 0 alone raises τ";
}

TEST(TokenGate, TauUpdateIsAdamOnTheSummedSignal) {
  torch::manual_seed(6);
  Fixture f(GateOptions{.s = 0.1, .lambda = 0.01});
  f.base->Attach(f.gate, "adapter");
  f.base->train();
  // Two micro-batches in one step: g sums over both.
  double g_total = 0;
  for (int mb = 0; mb < 2; ++mb) {
    torch::Tensor x = torch::randn({kTokens, kIn}, torch::kDouble);
    torch::Tensor probe = torch::randn({kTokens, kOut}, torch::kDouble);
    (f.base->forward(x) * probe).sum().backward();
    torch::Tensor mu = f.gate->last_mu();
    // τ = 0 → every token on: g = Σ [1(μ ≥ 0)·μ + λ].
    g_total += (mu.clamp_min(0) + 0.01).sum().item<double>();
  }
  EXPECT_NEAR(f.gate->PendingTauGradient(), g_total, 1e-12);
  f.gate->UpdateTau();
  // k = 1: m̂ = g, v̂ = g² → Δτ = s·g/(|g| + ε).
  EXPECT_NEAR(f.gate->tau(), 0.1 * g_total / (std::abs(g_total) + 1e-8), 1e-12);
}

TEST(TokenGate, PaddingNeverCounts) {
  torch::manual_seed(7);
  torch::Tensor x = torch::randn({1, 4, kIn}, torch::kDouble);
  torch::Tensor padded = torch::cat({x, torch::randn({1, 3, kIn}, torch::kDouble) * 50}, 1);
  torch::Tensor probe = torch::randn({1, 4, kOut}, torch::kDouble);
  torch::Tensor probe_padded = torch::cat({probe, torch::randn({1, 3, kOut}, torch::kDouble)}, 1);
  auto run = [&](const torch::Tensor& in, const torch::Tensor& pr, const torch::Tensor& mask) {
    torch::manual_seed(8);
    Fixture f(GateOptions{.s = 0.1, .lambda = 0.01});
    f.ctx->token_mask = mask;
    f.base->Attach(f.gate, "adapter");
    f.base->train();
    (f.base->forward(in) * pr).sum().backward();
    const TokenGate::Sparsity sparsity = f.gate->TakeTrainSparsity();
    f.gate->UpdateTau();
    return std::make_pair(f.gate->tau(), sparsity);
  };
  auto [tau_plain, sp_plain] = run(x, probe, torch::ones({1, 4}));
  auto [tau_pad, sp_pad] = run(padded, probe_padded, torch::tensor({{1, 1, 1, 1, 0, 0, 0}}));
  EXPECT_DOUBLE_EQ(tau_plain, tau_pad);
  EXPECT_DOUBLE_EQ(sp_plain.per_sequence, sp_pad.per_sequence);
  EXPECT_DOUBLE_EQ(sp_plain.per_token, sp_pad.per_token);
}

TEST(TokenGate, EvalSparsityIsItsOwnWindow) {
  torch::manual_seed(9);
  Fixture f;
  f.base->Attach(f.gate, "adapter");
  f.gate->set_tau(1e9);  // everything off
  f.base->eval();
  f.gate->BeginEval();
  {
    torch::NoGradGuard no_grad;
    f.base->forward(torch::randn({kTokens, kIn}, torch::kDouble));
  }
  EXPECT_DOUBLE_EQ(f.gate->EvalSparsity().per_sequence, 1.0);
  EXPECT_DOUBLE_EQ(f.gate->EvalSparsity().per_token, 1.0);
  EXPECT_DOUBLE_EQ(f.gate->TakeTrainSparsity().per_sequence, -1.0);
  EXPECT_DOUBLE_EQ(f.gate->TakeTrainSparsity().per_token, -1.0);
}

// TS-PEFT eq. 23: sparsity per sequence (its real tokens), then the mean over sequences. A
// sequence of 2 real tokens, both off, and one of 8, all on: 0.5 per sequence, 0.2 by token.
// float64 runs the fused CPU node, bfloat16 the ATen reference path.
TEST(TokenGate, SparsityIsPerSequenceThenAveragedOverSequences) {
  for (torch::Dtype dtype : {torch::kDouble, torch::kBFloat16}) {
    torch::manual_seed(10);
    Fixture f;
    f.base->Attach(f.gate, "adapter");
    f.base->to(dtype);
    f.base->train();
    f.gate->set_tau(1e-3);
    // x = 0 gives Δ = 0 (r = 0 < τ: off); a random x gives r of order 1 (on).
    torch::Tensor x = torch::randn({2, 8, kIn}, torch::kDouble) + 1;
    x[0].slice(0, 0, 2).zero_();
    f.ctx->token_mask = torch::tensor({{1, 1, 0, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}});
    f.base->forward(x.to(dtype)).sum().backward();
    const TokenGate::Sparsity s = f.gate->TakeTrainSparsity();
    EXPECT_DOUBLE_EQ(s.per_sequence, 0.5) << dtype;
    EXPECT_DOUBLE_EQ(s.per_token, 0.2) << dtype;
    // The evaluation window counts the same way.
    f.base->eval();
    f.gate->BeginEval();
    {
      torch::NoGradGuard no_grad;
      f.base->forward(x.to(dtype));
    }
    EXPECT_DOUBLE_EQ(f.gate->EvalSparsity().per_sequence, 0.5) << dtype;
    EXPECT_DOUBLE_EQ(f.gate->EvalSparsity().per_token, 0.2) << dtype;
  }
}

// A packed row: the two sequences of the test above share one row of 10 real tokens plus 2 of
// padding (sequence_ids 0, 0, 1 × 8, 2, 2). Per-sequence sparsity is per record, 0.5 as when
// they had rows of their own, not 0.2 as one sequence of 10 would give.
TEST(TokenGate, PackedRecordsAreSequencesOfTheirOwn) {
  for (torch::Dtype dtype : {torch::kDouble, torch::kBFloat16}) {
    torch::manual_seed(10);
    Fixture f;
    f.base->Attach(f.gate, "adapter");
    f.base->to(dtype);
    f.base->train();
    f.gate->set_tau(1e-3);
    torch::Tensor x = torch::randn({1, 12, kIn}, torch::kDouble) + 1;
    x[0].slice(0, 0, 2).zero_();
    f.ctx->token_mask = torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}});
    f.ctx->sequence_ids = torch::tensor({{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2}});
    f.base->forward(x.to(dtype)).sum().backward();
    const TokenGate::Sparsity s = f.gate->TakeTrainSparsity();
    EXPECT_DOUBLE_EQ(s.per_sequence, 0.5) << dtype;
    EXPECT_DOUBLE_EQ(s.per_token, 0.2) << dtype;
    f.ctx->sequence_ids = torch::Tensor();  // one sequence per row: what packing must not give
    f.base->forward(x.to(dtype)).sum().backward();
    EXPECT_DOUBLE_EQ(f.gate->TakeTrainSparsity().per_sequence, 0.2) << dtype;
  }
}

// An AdaLoRA module whose keep mask keeps nothing changes nothing once the allocator re-masks,
// and is left out of sparsity even while the optimizer regrows E between maskings.
TEST(TokenGate, AdaLoraPrunedByItsKeepMaskIsLeftOutEvenWhenERegrows) {
  torch::manual_seed(11);
  Fixture f;
  auto ada = std::make_shared<AdaLoraAdapter>(*f.base, AdaLoraOptions{.init_r = 3, .alpha = 6});
  auto gate = std::make_shared<TokenGate>(ada, GateOptions{}, f.ctx);
  f.base->Attach(gate, "adapter");
  f.base->train();
  ada->SetKeep({false, false, false});
  {
    torch::NoGradGuard no_grad;
    ada->lora_E.fill_(0.5);
  }
  f.base->forward(torch::randn({kTokens, kIn}, torch::kDouble)).sum().backward();
  EXPECT_DOUBLE_EQ(gate->TakeTrainSparsity().per_token, -1.0);
  ada->SetKeep({false, true, false});
  f.base->forward(torch::randn({kTokens, kIn}, torch::kDouble)).sum().backward();
  EXPECT_GE(gate->TakeTrainSparsity().per_token, 0.0);
}

TEST(TokenGate, StateRoundTrip) {
  Fixture a, b;
  a.gate->set_tau(0.25);
  ASSERT_TRUE(b.gate->LoadStateDict(a.gate->StateDict()).ok());
  EXPECT_EQ(b.gate->tau(), 0.25);
  auto st = a.gate->StateDict();
  st.erase("tau_m");
  EXPECT_FALSE(b.gate->LoadStateDict(st).ok());
}

}  // namespace
}  // namespace peftd::adapters
