// The statistics of the paper's norm criteria (adapters/norm_probe.h) against their closed form,
// in double precision: mean ‖M(x)_i‖/‖W0 x_i + b‖ and mean ‖M(x)_i‖ over the real tokens, without
// dropout and without drawing random numbers; one observation per arming, training forwards only.
#include "adapters/norm_probe.h"

#include <gtest/gtest.h>

#include <cmath>

#include "adapters/lora.h"

namespace peftd::adapters {
namespace {

struct Fixture {
  // W0 = [[1, 0, 2], [0, 1, -1]], b = [0.5, -0.5]; LoRA r = 1, s = 1, A = [1, 1, 0], B = [2, 1]ᵀ,
  // so M(x) = (x0 + x1)·[2, 1].
  Linear base{3, 2, true, torch::TensorOptions().dtype(torch::kDouble)};
  std::shared_ptr<LoraAdapter> lora;
  std::shared_ptr<NormProbeContext> context = std::make_shared<NormProbeContext>();
  std::shared_ptr<NormProbe> probe;
  Fixture() {
    torch::NoGradGuard no_grad;
    base->weight.copy_(torch::tensor({{1.0, 0.0, 2.0}, {0.0, 1.0, -1.0}}, torch::kDouble));
    base->bias.copy_(torch::tensor({0.5, -0.5}, torch::kDouble));
    // Dropout 0.9: a probe that kept it would miss the closed form by far.
    lora = std::make_shared<LoraAdapter>(*base, LoraOptions{.r = 1, .alpha = 1, .dropout = 0.9});
    lora->lora_A.copy_(torch::tensor({{1.0, 1.0, 0.0}}, torch::kDouble));
    lora->lora_B.copy_(torch::tensor({{2.0}, {1.0}}, torch::kDouble));
    context->tokens = std::make_shared<GateContext>();
    // One row of three tokens; the third is padding.
    context->tokens->token_mask = torch::tensor({{1.0, 1.0, 0.0}}, torch::kDouble);
    probe = std::make_shared<NormProbe>(lora.get(), context);
    base->Attach(lora, "lora");
    base->set_norm_probe(probe);
    base->train();
  }
  static torch::Tensor X() {
    return torch::tensor({{{1.0, 2.0, 3.0}, {0.0, -1.0, 1.0}, {5.0, 5.0, 5.0}}}, torch::kDouble);
  }
};

TEST(NormProbe, MeansEqualTheClosedFormOverTheRealTokens) {
  Fixture f;
  f.base->forward(Fixture::X());
  // x1 = [1, 2, 3]: W0 x + b = [7.5, -1.5], M = [6, 3]; x2 = [0, -1, 1]: [2.5, -2.5], M = [-2, -1].
  const double relative =
      (std::sqrt(45.0) / std::sqrt(58.5) + std::sqrt(5.0) / std::sqrt(12.5)) / 2;
  const double absolute = (std::sqrt(45.0) + std::sqrt(5.0)) / 2;
  const NormProbe::Means m = f.probe->Read();
  EXPECT_EQ(m.tokens, 2);
  EXPECT_NEAR(m.relative, relative, 1e-14);
  EXPECT_NEAR(m.absolute, absolute, 1e-14);
  EXPECT_TRUE(f.lora->is_training());  // the probe puts the method back in training mode
}

TEST(NormProbe, ObservesOneTrainingForwardPerArming) {
  Fixture f;
  f.base->forward(Fixture::X());
  f.base->forward(Fixture::X());  // same arming: not observed
  EXPECT_EQ(f.probe->Read().tokens, 2);
  ++f.context->arming;
  {
    torch::NoGradGuard no_grad;  // an evaluation-like forward is never observed
    f.base->forward(Fixture::X());
  }
  f.base->eval();
  f.base->forward(Fixture::X());
  EXPECT_EQ(f.probe->Read().tokens, 2);
  f.base->train();
  f.base->forward(Fixture::X());
  EXPECT_EQ(f.probe->Read().tokens, 4);
  // The same tokens twice: the same means.
  EXPECT_NEAR(f.probe->Read().absolute, (std::sqrt(45.0) + std::sqrt(5.0)) / 2, 1e-14);
}

TEST(NormProbe, DrawsNoRandomNumbers) {
  Fixture f;
  torch::manual_seed(5);
  f.probe->Observe(Fixture::X(), f.base->weight, f.base->bias);
  const torch::Tensor after = torch::rand({4}, torch::kDouble);
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(after, torch::rand({4}, torch::kDouble)));
}

TEST(NormProbe, StateRoundTripsAndRefusesAWrongShape) {
  Fixture f;
  f.base->forward(Fixture::X());
  NormProbe other(f.lora.get(), f.context);
  ASSERT_TRUE(other.LoadState(f.probe->State()).ok());
  EXPECT_EQ(other.Read().tokens, 2);
  EXPECT_DOUBLE_EQ(other.Read().relative, f.probe->Read().relative);
  EXPECT_DOUBLE_EQ(other.Read().absolute, f.probe->Read().absolute);
  EXPECT_FALSE(other.LoadState(torch::zeros({2}, torch::kDouble)).ok());
}

}  // namespace
}  // namespace peftd::adapters
