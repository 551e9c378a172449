#include "adapters/adadhp_selector.h"

#include <gtest/gtest.h>

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;

TEST(AdaDhpSchedule, BudgetAtChosenSteps) {
  AdaDhpSchedule s{.target_num = 96, .tinit = 100, .tfinal = 500, .delta_t = 10};
  const int64_t n = 192;
  EXPECT_EQ(ModuleBudgetAt(s, n, 50).budget, 192);
  EXPECT_FALSE(ModuleBudgetAt(s, n, 100).prune);
  // (192 − 96)·((500 − 300)/400)³ + 96 = 96·0.125 + 96 = 108
  EXPECT_EQ(ModuleBudgetAt(s, n, 300).budget, 108);
  EXPECT_TRUE(ModuleBudgetAt(s, n, 300).prune);
  EXPECT_FALSE(ModuleBudgetAt(s, n, 301).prune);
  // floor(96·(399/400)³ + 96) = floor(191.28) = 191
  EXPECT_EQ(ModuleBudgetAt(s, n, 101).budget, 191);
  EXPECT_EQ(ModuleBudgetAt(s, n, 500).budget, 96);
  EXPECT_EQ(ModuleBudgetAt(s, n, 900).budget, 96);
  EXPECT_TRUE(ValidateSchedule(s, n).ok());
  EXPECT_FALSE(ValidateSchedule(s, 50).ok());
  s.tfinal = 50;
  EXPECT_NE(ValidateSchedule(s, n).message().find("adadhp.tfinal"), std::string::npos);
}

TEST(AdaDhpSelector, PrunesTheLowestModulesWhichReturnExactlyToTheBaseAndStayFrozen) {
  torch::manual_seed(1);
  std::vector<Linear> bases;
  std::vector<std::shared_ptr<AdaDhpAdapter>> mods;
  std::vector<std::pair<std::string, AdaDhpAdapter*>> named;
  for (int i = 0; i < 4; ++i) {
    bases.emplace_back(5, 4, true, torch::TensorOptions().dtype(torch::kDouble));
    torch::NoGradGuard no_grad;
    bases.back()->weight.normal_();
    bases.back()->bias.normal_();
    mods.push_back(std::make_shared<AdaDhpAdapter>(*bases.back()));
    bases.back()->Attach(mods.back(), "adapter");
    named.emplace_back("m" + std::to_string(i), mods.back().get());
  }
  AdaDhpSelector sel({.target_num = 2, .tinit = 0, .tfinal = 2, .delta_t = 1}, named);
  torch::Tensor x = torch::randn({6, 5}, torch::kDouble);
  // Module i's loss is scaled by (i + 1): module 0 matters least, then 1.
  auto backward = [&] {
    torch::Tensor loss = torch::zeros({}, torch::kDouble);
    for (int i = 0; i < 4; ++i) loss = loss + (i + 1) * bases[i]->forward(x).pow(2).sum();
    loss.backward();
  };
  {
    torch::NoGradGuard no_grad;
    for (auto& m : mods) m->adadhp_l.add_(0.1);
  }
  backward();
  sel.Step(1);  // budget floor(2·(1/2)³ + 2) = 2: prune the two lowest
  EXPECT_EQ(sel.ActiveModules(), 2);
  EXPECT_TRUE(mods[0]->frozen());
  EXPECT_TRUE(mods[1]->frozen());
  EXPECT_FALSE(mods[3]->frozen());
  for (int i : {0, 1}) {
    EXPECT_TRUE(torch::equal(bases[i]->forward(x), F::linear(x, bases[i]->weight, bases[i]->bias)));
    EXPECT_FALSE(mods[i]->adadhp_l.requires_grad());
  }
  backward();
  sel.Step(2);
  EXPECT_TRUE(torch::equal(mods[0]->adadhp_l, torch::ones({5}, torch::kDouble)));
  EXPECT_FALSE(mods[0]->adadhp_l.grad().defined());
  AdaDhpSelector restored({.target_num = 2, .tinit = 0, .tfinal = 2, .delta_t = 1}, named);
  ASSERT_TRUE(restored.LoadStateDict(sel.StateDict()).ok());
  EXPECT_EQ(restored.ActiveModules(), 2);
}

}  // namespace
}  // namespace peftd::adapters
