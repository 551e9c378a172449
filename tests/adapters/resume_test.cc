// Everything that changes during training (AdaLoRA importance and masks, AdaDHP's active set, the
// gates' τ and moments) is saved and restored so that training continues bit-for-bit on CPU.
#include <gtest/gtest.h>

#include "adapters/peft_model.h"

namespace peftd::adapters {
namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    for (int i = 0; i < 3; ++i)
      layers.push_back(register_module("l" + std::to_string(i), Linear(6, 6, true)));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& l : layers) x = torch::tanh(l->forward(x));
    return x;
  }
  std::vector<Linear> layers;
};
TORCH_MODULE(Net);

Net MakeNet() {
  torch::manual_seed(0);
  Net net;
  torch::NoGradGuard no_grad;
  for (auto& p : net->parameters()) p.normal_(0, 0.5);
  return net;
}

AdapterConfig Config(MethodKind kind) {
  AdapterConfig c;
  c.method = kind;
  c.adalora = {.init_r = 3, .alpha = 6};
  c.adalora_schedule = {.target_r = 1, .tinit = 1, .tfinal = 2, .delta_t = 1};
  c.adadhp = {.target_num = 1, .tinit = 1, .tfinal = 4, .delta_t = 1};
  c.gate = GateOptions{.s = 1e-2, .lambda = 1e-3};
  c.targets.target_modules = {"re:l[0-9]"};
  return c;
}

// One step of plain SGD on a fixed batch for step t; the optimizer itself is stateless here so
// any difference comes from the adapter state.
void TrainStep(PeftModel& peft, Net& net, int64_t t) {
  torch::manual_seed(100 + t);
  torch::Tensor x = torch::randn({5, 6});
  torch::Tensor loss = net->forward(x).pow(2).mean();
  torch::Tensor reg = peft.RegularizationLoss();
  if (reg.defined()) loss = loss + reg;
  loss.backward();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : peft.TrainableTensors()) {
      if (p.grad().defined()) p.add_(p.grad(), -0.1);
    }
  }
  peft.AfterOptimizerStep(t);
  for (auto& [name, p] : peft.TrainableTensors()) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

class ResumeTest : public ::testing::TestWithParam<MethodKind> {};

TEST_P(ResumeTest, ContinuesBitForBit) {
  const int64_t total = 6, cut = 3;
  Net a = MakeNet();
  auto pa = *PeftModel::Apply(a.get(), Config(GetParam()), total);
  for (int64_t t = 1; t <= total; ++t) TrainStep(*pa, a, t);

  Net b = MakeNet();
  auto pb = *PeftModel::Apply(b.get(), Config(GetParam()), total);
  for (int64_t t = 1; t <= cut; ++t) TrainStep(*pb, b, t);
  // "Checkpoint": every adapter tensor (frozen ones too) and the method state.
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& item : b->named_parameters())
    tensors[item.key()] = item.value().detach().clone();
  auto state = pb->StateDict();
  for (auto& [k, v] : state) v = v.clone();

  Net c = MakeNet();
  auto pc = *PeftModel::Apply(c.get(), Config(GetParam()), total);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : c->named_parameters()) item.value().copy_(tensors.at(item.key()));
  }
  ASSERT_TRUE(pc->LoadStateDict(state).ok());
  for (int64_t t = cut + 1; t <= total; ++t) TrainStep(*pc, c, t);

  for (const auto& item : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), c->named_parameters()[item.key()])) << item.key();
  }
  EXPECT_EQ(pa->GateTaus(), pc->GateTaus());
  EXPECT_EQ(pa->AdaLoraRanks(), pc->AdaLoraRanks());
  EXPECT_EQ(pa->AdaDhpActiveModules(), pc->AdaDhpActiveModules());
  if (GetParam() == MethodKind::kAdaDhp) EXPECT_EQ(pc->AdaDhpActiveModules(), 1);
  if (GetParam() == MethodKind::kAdaLora) {
    int64_t ranks = 0;
    for (auto& [n, r] : pc->AdaLoraRanks()) ranks += r;
    EXPECT_LE(ranks, 3);
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, ResumeTest,
                         ::testing::Values(MethodKind::kLora, MethodKind::kAdaLora,
                                           MethodKind::kAdaDhp, MethodKind::kHut),
                         [](const auto& info) { return std::string(MethodName(info.param)); });

}  // namespace
}  // namespace peftd::adapters
