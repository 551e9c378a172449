// AdaLoRA and its rank allocator against METHODS.md, in double precision.
#include "adapters/adalora.h"

#include <gtest/gtest.h>

#include "adapters/peft_model.h"
#include "adapters/rank_allocator.h"

namespace peftd::adapters {
namespace {

namespace F = torch::nn::functional;
constexpr int64_t kIn = 6, kOut = 5;

Linear MakeBase() {
  Linear base(kIn, kOut, true, torch::TensorOptions().dtype(torch::kDouble));
  torch::NoGradGuard no_grad;
  base->weight.copy_(torch::randn({kOut, kIn}, torch::kDouble));
  base->bias.copy_(torch::randn({kOut}, torch::kDouble));
  return base;
}

TEST(AdaLora, IdentityAtInitAndClosedForm) {
  torch::manual_seed(4);
  Linear base = MakeBase();
  auto a = std::make_shared<AdaLoraAdapter>(*base, AdaLoraOptions{.init_r = 4, .alpha = 8});
  torch::Tensor x = torch::randn({3, kIn}, torch::kDouble);
  torch::Tensor plain = base->forward(x);
  base->Attach(a, "adapter");
  EXPECT_TRUE(torch::equal(base->forward(x), plain));  // E = 0
  {
    torch::NoGradGuard no_grad;
    a->lora_E.copy_(torch::randn({4, 1}, torch::kDouble));
  }
  const double s = 8.0 / (4 + 1e-5);
  torch::Tensor dw = s * a->lora_B.matmul(torch::diag(a->lora_E.view(-1))).matmul(a->lora_A);
  EXPECT_TRUE(torch::allclose(base->forward(x), x.matmul((base->weight + dw).t()) + base->bias,
                              1e-12, 1e-12));
  EXPECT_EQ(a->NumTrainable(), 4 * (kIn + kOut) + 4);
}

TEST(AdaLora, GradientsMatchFiniteDifferences) {
  torch::manual_seed(5);
  Linear base = MakeBase();
  auto a = std::make_shared<AdaLoraAdapter>(*base, AdaLoraOptions{.init_r = 3, .alpha = 6});
  {
    torch::NoGradGuard no_grad;
    a->lora_E.normal_();
  }
  base->Attach(a, "adapter");
  torch::Tensor x = torch::randn({4, kIn}, torch::kDouble),
                probe = torch::randn({4, kOut}, torch::kDouble);
  auto loss = [&] { return (base->forward(x) * probe).sum(); };
  loss().backward();
  for (torch::Tensor* p : {&a->lora_A, &a->lora_E, &a->lora_B}) {
    torch::NoGradGuard no_grad;
    auto flat = p->view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double orig = flat[i].item<double>();
      flat[i] = orig + 1e-6;
      const double up = loss().item<double>();
      flat[i] = orig - 1e-6;
      const double down = loss().item<double>();
      flat[i] = orig;
      EXPECT_NEAR(p->grad().view({-1})[i].item<double>(), (up - down) / 2e-6, 1e-6);
    }
  }
}

TEST(AdaLora, MergedForwardEqualsUnmergedAndUnmergeRestoresW0) {
  torch::manual_seed(12);
  Linear base(kIn, kOut, true);
  {
    torch::NoGradGuard no_grad;
    base->weight.normal_();
    base->bias.normal_();
  }
  const torch::Tensor w0 = base->weight.clone();
  auto a = std::make_shared<AdaLoraAdapter>(*base, AdaLoraOptions{.init_r = 4, .alpha = 8});
  {
    torch::NoGradGuard no_grad;
    a->lora_E.normal_();
  }
  a->SetKeep({true, false, true, true});
  base->Attach(a, "adapter");
  torch::Tensor x = torch::randn({3, kIn});
  torch::Tensor unmerged = base->forward(x).detach();
  ASSERT_TRUE(base->Merge().ok());
  EXPECT_TRUE(torch::allclose(base->forward(x), unmerged, 1e-5, 1e-5));
  ASSERT_TRUE(base->Unmerge().ok());
  EXPECT_TRUE(torch::allclose(base->weight, w0, 1e-5, 1e-6));
}

TEST(AdaLoraBudget, WorkedExampleOfMethodsMd) {
  AdaLoraSchedule s{
      .init_r = 12, .target_r = 8, .tinit = 100, .tfinal = 200, .delta_t = 10, .total_step = 1000};
  EXPECT_EQ(BudgetAt(s, 64, 100).budget, 768);
  EXPECT_FALSE(BudgetAt(s, 64, 100).mask);
  EXPECT_EQ(BudgetAt(s, 64, 101).budget, 766);
  EXPECT_EQ(BudgetAt(s, 64, 450).budget, 544);
  EXPECT_TRUE(BudgetAt(s, 64, 450).mask);
  EXPECT_FALSE(BudgetAt(s, 64, 451).mask);
  EXPECT_EQ(BudgetAt(s, 64, 800).budget, 512);
  EXPECT_EQ(BudgetAt(s, 64, 900).budget, 512);
}

// docs/methods.md's schedule table: 4 modules 12 -> 8, T = 10, tinit = 2, tfinal = 3,
// delta_t = 1, by PEFT's global_step.
TEST(AdaLoraBudget, WorkedExampleOfDocsScheduleTable) {
  AdaLoraSchedule s{
      .init_r = 12, .target_r = 8, .tinit = 2, .tfinal = 3, .delta_t = 1, .total_step = 10};
  const int64_t budgets[] = {48, 48, 48, 40, 35, 33, 32, 32};
  const bool masks[] = {false, false, false, true, true, true, true, true};
  for (int g = 0; g <= 7; ++g) {
    EXPECT_EQ(BudgetAt(s, 4, g).budget, budgets[g]) << g;
    EXPECT_EQ(BudgetAt(s, 4, g).mask, masks[g]) << g;
  }
}

TEST(AdaLora, RankIsTheKeepMaskNotTheNonZeroEntriesOfE) {
  torch::manual_seed(13);
  Linear base = MakeBase();
  auto a = std::make_shared<AdaLoraAdapter>(*base, AdaLoraOptions{.init_r = 4, .alpha = 8});
  // E = 0 at init: every triplet is still kept.
  EXPECT_EQ(a->Rank(), 4);
  EXPECT_TRUE(a->IsActive());
  a->SetKeep({true, false, true, false});
  {
    torch::NoGradGuard no_grad;
    a->lora_E.fill_(0.5);  // the optimizer regrows masked entries between maskings
  }
  EXPECT_EQ(a->Rank(), 2);
  a->SetKeep({false, false, false, false});
  {
    torch::NoGradGuard no_grad;
    a->lora_E.fill_(0.5);
  }
  EXPECT_EQ(a->Rank(), 0);
  EXPECT_FALSE(a->IsActive());
}

TEST(AdaLoraBudget, RefusesSchedulesThatCannotWork) {
  AdaLoraSchedule ok{.init_r = 12, .target_r = 8, .tinit = 100, .tfinal = 200, .total_step = 1000};
  EXPECT_TRUE(ValidateSchedule(ok).ok());
  auto with = [&](auto f) {
    AdaLoraSchedule s = ok;
    f(s);
    return std::string(ValidateSchedule(s).message());
  };
  EXPECT_NE(with([](auto& s) { s.tinit = 800; }).find("adalora.tinit"), std::string::npos);
  EXPECT_NE(with([](auto& s) { s.target_r = 13; }).find("adalora.target_r"), std::string::npos);
  EXPECT_NE(with([](auto& s) { s.delta_t = 0; }).find("adalora.delta_t"), std::string::npos);
  EXPECT_NE(with([](auto& s) { s.total_step = 0; }).find("adalora.total_step"), std::string::npos);
}

class AllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(6);
    for (int i = 0; i < 2; ++i) {
      bases.push_back(MakeBase());
      mods.push_back(
          std::make_shared<AdaLoraAdapter>(*bases.back(), AdaLoraOptions{.init_r = 3, .alpha = 6}));
      torch::NoGradGuard no_grad;
      mods.back()->lora_E.normal_();
      bases.back()->Attach(mods.back(), "adapter");
    }
  }
  std::vector<std::pair<std::string, AdaLoraAdapter*>> Named() {
    return {{"m0", mods[0].get()}, {"m1", mods[1].get()}};
  }
  void Backward() {
    torch::Tensor x = torch::randn({4, kIn}, torch::kDouble);
    (bases[0]->forward(x).pow(2).sum() + bases[1]->forward(x).sum()).backward();
  }
  std::vector<Linear> bases;
  std::vector<std::shared_ptr<AdaLoraAdapter>> mods;
};

TEST_F(AllocatorTest, ImportanceEmasMatchHandComputation) {
  AdaLoraSchedule s{.init_r = 3, .target_r = 2, .tinit = 10, .tfinal = 0, .total_step = 100};
  RankAllocator alloc(s, Named());
  torch::Tensor ipt_bar = torch::zeros_like(mods[0]->lora_A),
                unc_bar = torch::zeros_like(mods[0]->lora_A);
  for (int global_step = 0; global_step < 2; ++global_step) {
    for (auto& m : mods) m->zero_grad();
    Backward();
    torch::Tensor ipt = (mods[0]->lora_A * mods[0]->lora_A.grad()).abs();
    ipt_bar = 0.85 * ipt_bar + 0.15 * ipt;
    unc_bar = 0.85 * unc_bar + 0.15 * (ipt - ipt_bar).abs();
    alloc.Step(global_step);
  }
  const auto state = alloc.StateDict();
  EXPECT_TRUE(torch::allclose(state.at("m0.A.ipt"), ipt_bar, 1e-14, 0));
  EXPECT_TRUE(torch::allclose(state.at("m0.A.unc"), unc_bar, 1e-14, 0));
  // Triplet score S[i] = score(E)[i] + mean_j score(A)[i, j] + mean_o score(B)[o, i].
  auto sc = [&](const char* k) {
    return state.at(std::string("m0.") + k + ".ipt") * state.at(std::string("m0.") + k + ".unc");
  };
  torch::Tensor want = sc("E").view(-1) + sc("A").mean(1) + sc("B").mean(0);
  EXPECT_TRUE(torch::allclose(alloc.TripletScores()[0], want, 1e-14, 0));
}

TEST_F(AllocatorTest, MaskingZeroesExactlyTheLowestTriplets) {
  AdaLoraSchedule s{.init_r = 3, .target_r = 1, .tinit = 0, .tfinal = 0, .total_step = 100};
  RankAllocator alloc(s, Named());
  Backward();
  alloc.Step(0);  // importance from one step; global_step 0 <= tinit: no mask
  std::vector<torch::Tensor> scores = alloc.TripletScores();
  torch::Tensor all = torch::cat(scores);
  torch::Tensor sorted = std::get<0>(all.sort());
  alloc.MaskToBudget(4);  // 6 triplets in all → the 2 lowest go
  const double threshold = sorted[1].item<double>();
  for (int m = 0; m < 2; ++m) {
    for (int i = 0; i < 3; ++i) {
      const bool low = scores[m][i].item<double>() <= threshold;
      EXPECT_EQ(mods[m]->lora_E[i].item<double>() == 0.0, low) << m << "," << i;
      EXPECT_EQ(mods[m]->keep()[i], !low);
    }
  }
  EXPECT_EQ(alloc.Ranks().at("m0") + alloc.Ranks().at("m1"), 4);
}

TEST_F(AllocatorTest, NonPositiveKMasksNothing) {
  AdaLoraSchedule s{.init_r = 3, .target_r = 3, .tinit = 0, .tfinal = 0, .total_step = 100};
  RankAllocator alloc(s, Named());
  Backward();
  alloc.MaskToBudget(6);
  alloc.MaskToBudget(7);
  EXPECT_EQ(alloc.Ranks().at("m0"), 3);
  EXPECT_EQ(alloc.Ranks().at("m1"), 3);
}

TEST_F(AllocatorTest, FinalMaskFreezesThePatternAndIsReapplied) {
  AdaLoraSchedule s{.init_r = 3, .target_r = 1, .tinit = 0, .tfinal = 2, .total_step = 4};
  RankAllocator alloc(s, Named());
  for (int global_step = 0; global_step <= 2; ++global_step) {
    EXPECT_FALSE(alloc.frozen()) << global_step;
    Backward();
    alloc.Step(global_step);
  }
  EXPECT_TRUE(alloc.frozen());
  EXPECT_EQ(alloc.Ranks().at("m0") + alloc.Ranks().at("m1"), 2);
  auto pattern = alloc.RankPattern();
  {
    torch::NoGradGuard no_grad;
    for (auto& m : mods) m->lora_E.fill_(1.0);  // an optimizer step moves every E
  }
  alloc.Step(3);
  EXPECT_EQ(alloc.RankPattern(), pattern);
  EXPECT_EQ(alloc.Ranks().at("m0") + alloc.Ranks().at("m1"), 2);
  for (int m = 0; m < 2; ++m) {
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(mods[m]->lora_E[i].item<double>() == 0.0, !pattern.at(Named()[m].first)[i]);
    }
  }
}

// PEFT's update_and_allocate updates importance only while global_step < T − tfinal: the final
// mask at T − tfinal ranks by the averages of the step before, whatever that step's gradients.
TEST_F(AllocatorTest, FinalMaskRanksByTheImportanceOfTheStepBefore) {
  AdaLoraSchedule s{
      .init_r = 3, .target_r = 1, .tinit = 2, .tfinal = 3, .delta_t = 1, .total_step = 10};
  RankAllocator alloc(s, Named());
  for (int global_step = 0; global_step < 7; ++global_step) {
    for (auto& m : mods) m->zero_grad();
    Backward();
    alloc.Step(global_step);
  }
  ASSERT_FALSE(alloc.frozen());
  // The mask at target_bgt = 2 of the scores as they stand after global_step 6.
  torch::Tensor scores = torch::cat(alloc.TripletScores());
  const double threshold = std::get<0>(torch::kthvalue(scores, 6 - 2)).item<double>();
  torch::Tensor expected = scores.gt(threshold);
  // Gradients that would turn the ranking upside down if this step's importance counted.
  {
    torch::NoGradGuard no_grad;
    for (int m = 0; m < 2; ++m) {
      torch::Tensor low = expected.slice(0, 3 * m, 3 * m + 3).logical_not().to(torch::kDouble);
      mods[m]->lora_A.mutable_grad() = 1e6 * low.unsqueeze(1).expand({3, kIn}).clone();
      mods[m]->lora_E.mutable_grad() = 1e6 * low.unsqueeze(1).clone();
      mods[m]->lora_B.mutable_grad() = 1e6 * low.unsqueeze(0).expand({kOut, 3}).clone();
    }
  }
  alloc.Step(7);
  EXPECT_TRUE(alloc.frozen());
  for (int m = 0; m < 2; ++m) {
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(mods[m]->keep()[i], expected[3 * m + i].item<bool>()) << m << "," << i;
    }
  }
  EXPECT_EQ(alloc.Ranks().at("m0") + alloc.Ranks().at("m1"), 2);
  // The importance averages start over once the pattern is final, as PEFT's reset_ipt.
  EXPECT_EQ(alloc.StateDict().at("m0.A.ipt").abs().sum().item<double>(), 0.0);
}

TEST_F(AllocatorTest, OrthogonalityPenaltyIsTheMeanOfFrobeniusResiduals) {
  AdaLoraSchedule s{.init_r = 3, .target_r = 2, .total_step = 10, .orth_reg_weight = 0.5};
  RankAllocator alloc(s, Named());
  double sum = 0;
  for (auto& m : mods) {
    torch::Tensor eye = torch::eye(3, torch::kDouble);
    sum += (m->lora_A.matmul(m->lora_A.t()) - eye).pow(2).sum().sqrt().item<double>();
    sum += (m->lora_B.t().matmul(m->lora_B) - eye).pow(2).sum().sqrt().item<double>();
  }
  EXPECT_NEAR(alloc.OrthogonalityPenalty().item<double>(), 0.5 * sum / 4, 1e-12);
}

TEST_F(AllocatorTest, TruncatedExportReloadsIntoAnIdenticalForward) {
  mods[0]->SetKeep({true, false, true});
  const auto saved = mods[0]->ExportTensors();
  EXPECT_EQ(saved.at("lora_A").sizes(), (std::vector<int64_t>{2, kIn}));
  EXPECT_EQ(saved.at("lora_E").sizes(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(saved.at("lora_B").sizes(), (std::vector<int64_t>{kOut, 2}));
  Linear other(kIn, kOut, true, torch::TensorOptions().dtype(torch::kDouble));
  {
    torch::NoGradGuard no_grad;
    other->weight.copy_(bases[0]->weight);
    other->bias.copy_(bases[0]->bias);
  }
  auto fresh = std::make_shared<AdaLoraAdapter>(*other, AdaLoraOptions{.init_r = 3, .alpha = 6});
  fresh->SetKeep({true, false, true});
  ASSERT_TRUE(fresh
                  ->ImportTensors({{"lora_A", saved.at("lora_A").to(torch::kDouble)},
                                   {"lora_E", saved.at("lora_E").to(torch::kDouble)},
                                   {"lora_B", saved.at("lora_B").to(torch::kDouble)}})
                  .ok());
  other->Attach(fresh, "adapter");
  torch::Tensor x = torch::randn({3, kIn}, torch::kDouble);
  // Export goes through fp32, so compare in fp32 terms.
  EXPECT_TRUE(torch::allclose(other->forward(x), bases[0]->forward(x), 1e-6, 1e-6));
}

TEST_F(AllocatorTest, StateRoundTripContinuesIdentically) {
  AdaLoraSchedule s{
      .init_r = 3, .target_r = 1, .tinit = 0, .tfinal = 0, .delta_t = 1, .total_step = 100};
  RankAllocator a(s, Named());
  Backward();
  a.Step(1);  // global_step 1 > tinit: importance and a mask
  RankAllocator b(s, Named());
  ASSERT_TRUE(b.LoadStateDict(a.StateDict()).ok());
  EXPECT_TRUE(torch::equal(torch::cat(a.TripletScores()), torch::cat(b.TripletScores())));
}

// Four adapted Linears named m0..m3, for PeftModel.
struct FourImpl : torch::nn::Module {
  FourImpl() {
    for (int i = 0; i < 4; ++i) {
      linears.push_back(register_module("m" + std::to_string(i), MakeBase()));
    }
  }
  std::vector<Linear> linears;
};
TORCH_MODULE(Four);

// The trainer's optimizer step k is PEFT's global_step k − 1 (PEFT's training loops count
// update_and_allocate's argument from 0): docs/methods.md's table, 4 modules 12 -> 8, T = 10,
// tinit = 2, tfinal = 3, delta_t = 1.
TEST(AdaLoraSchedule, OptimizerStepKIsPeftsGlobalStepKMinusOne) {
  torch::manual_seed(21);
  Four model;
  AdapterConfig c;
  c.method = MethodKind::kAdaLora;
  c.adalora = {.init_r = 12, .alpha = 24};
  c.adalora_schedule = {.target_r = 8, .tinit = 2, .tfinal = 3, .delta_t = 1};
  c.targets.target_modules = {"m0", "m1", "m2", "m3"};
  auto peft = PeftModel::Apply(model.get(), c, /*total_steps=*/10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  const int64_t want[] = {48, 48, 48, 40, 35, 33, 32, 32, 32, 32};
  for (int k = 1; k <= 10; ++k) {
    model->zero_grad();
    torch::Tensor x = torch::randn({4, kIn}, torch::kDouble);
    torch::Tensor loss = torch::zeros({}, torch::kDouble);
    for (auto& l : model->linears) {
      loss = loss + (l->forward(x) * torch::randn({4, kOut}, torch::kDouble)).sum();
    }
    loss.backward();
    {
      torch::NoGradGuard no_grad;  // a plain SGD step stands in for AdamW
      for (auto& [name, t] : (*peft)->TrainableTensors()) t.sub_(0.05 * t.grad());
    }
    (*peft)->AfterOptimizerStep(k);
    int64_t total = 0;
    for (const auto& [name, rank] : (*peft)->AdaLoraRanks()) total += rank;
    EXPECT_EQ(total, want[k - 1]) << "after optimizer step " << k;
  }
}

}  // namespace
}  // namespace peftd::adapters
