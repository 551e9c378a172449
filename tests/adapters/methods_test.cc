// LoRA, DoRA, HUT and AdaDHP against METHODS.md, in double precision: exact identity at init,
// forward equal to the closed form written here independently (materialised weights), gradients
// equal to central finite differences, merge == unmerged forward, export/import bit-exact, counts.
#include <gtest/gtest.h>

#include <functional>

#include "adapters/adadhp.h"
#include "adapters/dora.h"
#include "adapters/hut.h"
#include "adapters/lora.h"

namespace peftd::adapters {
namespace {

constexpr int64_t kIn = 6, kOut = 5, kRank = 3;

Linear MakeBase(torch::Dtype dtype = torch::kDouble, bool with_bias = true) {
  Linear base(kIn, kOut, with_bias, torch::TensorOptions().dtype(dtype));
  torch::NoGradGuard no_grad;
  base->weight.copy_(torch::randn({kOut, kIn}, torch::kDouble));
  if (with_bias) base->bias.copy_(torch::randn({kOut}, torch::kDouble));
  return base;
}

// Moves every trainable tensor off its initial value so closed forms are not trivially met.
void Perturb(Adapter& adapter) {
  torch::NoGradGuard no_grad;
  for (auto& p : adapter.parameters()) p.add_(torch::randn_like(p) * 0.3);
}

torch::Tensor Input(torch::Dtype dtype = torch::kDouble) {
  return torch::randn({2, 4, kIn}, torch::TensorOptions().dtype(dtype));
}

struct Method {
  const char* name;
  std::function<std::shared_ptr<Adapter>(const LinearImpl&)> make;
  // h from the materialised closed form of METHODS.md.
  std::function<torch::Tensor(Adapter&, const torch::Tensor& x, const torch::Tensor& W,
                              const torch::Tensor& b)>
      closed_form;
  int64_t count;
};

void PrintTo(const Method& m, std::ostream* os) { *os << m.name; }

std::vector<Method> Methods() {
  const LoraOptions lora{.r = kRank, .alpha = 6};
  const LoraOptions rslora{.r = kRank, .alpha = 6, .use_rslora = true, .gaussian_init = true};
  return {
      {"lora", [=](const LinearImpl& b) { return std::make_shared<LoraAdapter>(b, lora); },
       [](Adapter& a, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
         auto& l = static_cast<LoraAdapter&>(a);
         torch::Tensor w = W + (6.0 / kRank) * l.lora_B.matmul(l.lora_A);
         return x.matmul(w.t()) + b;
       },
       kRank * (kIn + kOut)},
      {"rslora", [=](const LinearImpl& b) { return std::make_shared<LoraAdapter>(b, rslora); },
       [](Adapter& a, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
         auto& l = static_cast<LoraAdapter&>(a);
         torch::Tensor w = W + (6.0 / std::sqrt(kRank)) * l.lora_B.matmul(l.lora_A);
         return x.matmul(w.t()) + b;
       },
       kRank * (kIn + kOut)},
      {"dora", [=](const LinearImpl& b) { return std::make_shared<DoraAdapter>(b, lora); },
       [](Adapter& a, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
         auto& d = static_cast<DoraAdapter&>(a);
         // Eval equivalent: h = m ⊙ (W0 + sBA)x / ‖W0 + sBA‖_row + b0.
         torch::Tensor v = W + 2.0 * d.lora_B.matmul(d.lora_A);
         torch::Tensor w = (d.magnitude / v.norm(2, 1)).unsqueeze(1) * v;
         return x.matmul(w.t()) + b;
       },
       kRank * (kIn + kOut) + kOut},
      {"hut",
       [](const LinearImpl& b) { return std::make_shared<HutAdapter>(b, HutOptions{.r = kRank}); },
       [](Adapter& a, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
         auto& h = static_cast<HutAdapter&>(a);
         torch::Tensor w =
             torch::diag(h.hut_B.mean(0)).matmul(W).matmul(torch::diag(h.hut_A.mean(1)));
         return h.hut_gamma * (x.matmul(w.t()) + b) + h.hut_beta;
       },
       kRank * (kIn + kOut) + 2 * kOut},
      {"adadhp", [](const LinearImpl& b) { return std::make_shared<AdaDhpAdapter>(b); },
       [](Adapter& a, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
         auto& d = static_cast<AdaDhpAdapter&>(a);
         torch::Tensor w = torch::diag(d.adadhp_r).matmul(W).matmul(torch::diag(d.adadhp_l));
         return x.matmul(w.t()) + b;
       },
       kIn + kOut},
  };
}

class MethodTest : public ::testing::TestWithParam<Method> {
 protected:
  void SetUp() override { torch::manual_seed(11); }
};

TEST_P(MethodTest, IdentityAtInitIsExact) {
  Linear base = MakeBase();
  torch::Tensor x = Input();
  torch::Tensor expected = base->forward(x);
  base->Attach(GetParam().make(*base), "adapter");
  EXPECT_TRUE(torch::equal(base->forward(x), expected)) << GetParam().name;
}

TEST_P(MethodTest, ForwardEqualsTheClosedForm) {
  Linear base = MakeBase();
  auto adapter = GetParam().make(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input();
  torch::Tensor want = GetParam().closed_form(*adapter, x, base->weight, base->bias);
  EXPECT_TRUE(torch::allclose(base->forward(x), want, 1e-12, 1e-12)) << GetParam().name;
  // Delta is h − base, also the way the token gate asks for it.
  torch::Tensor plain = torch::nn::functional::linear(x, base->weight, base->bias);
  EXPECT_TRUE(torch::allclose(adapter->Delta(x, plain, base->weight, base->bias), want - plain,
                              1e-12, 1e-12));
}

TEST_P(MethodTest, WithoutBias) {
  Linear base = MakeBase(torch::kDouble, /*with_bias=*/false);
  auto adapter = GetParam().make(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input();
  torch::Tensor want =
      GetParam().closed_form(*adapter, x, base->weight, torch::zeros({kOut}, torch::kDouble));
  EXPECT_TRUE(torch::allclose(base->forward(x), want, 1e-12, 1e-12)) << GetParam().name;
}

TEST_P(MethodTest, GradientsMatchCentralFiniteDifferences) {
  Linear base = MakeBase();
  auto adapter = GetParam().make(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input();
  torch::Tensor probe = torch::randn({2, 4, kOut}, torch::kDouble);
  std::function<torch::Tensor()> loss = [&] { return (base->forward(x) * probe).sum(); };
  loss().backward();
  if (std::string(GetParam().name) == "dora") {
    // DoRA's gradient treats n = ‖W0 + s·BA‖_row as a constant (METHODS.md: stopgrad): compare
    // with finite differences of the same function with n held at its current value.
    auto* d = static_cast<DoraAdapter*>(adapter.get());
    torch::Tensor n = (base->weight + 2.0 * d->lora_B.matmul(d->lora_A)).norm(2, 1).detach();
    loss = [&, d, n] {
      torch::Tensor v = base->weight + 2.0 * d->lora_B.matmul(d->lora_A);
      return ((x.matmul(v.t()) * (d->magnitude / n) + base->bias) * probe).sum();
    };
  }
  EXPECT_FALSE(base->weight.grad().defined()) << "the frozen base must get no gradient";
  const double eps = 1e-6;
  for (auto& item : adapter->named_parameters()) {
    torch::Tensor p = item.value();
    ASSERT_TRUE(p.grad().defined()) << item.key();
    torch::Tensor numeric = torch::zeros_like(p);
    torch::NoGradGuard no_grad;
    auto flat = p.view({-1});
    auto nflat = numeric.view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double orig = flat[i].item<double>();
      flat[i] = orig + eps;
      const double up = loss().item<double>();
      flat[i] = orig - eps;
      const double down = loss().item<double>();
      flat[i] = orig;
      nflat[i] = (up - down) / (2 * eps);
    }
    EXPECT_TRUE(torch::allclose(p.grad(), numeric, 1e-6, 1e-7))
        << GetParam().name << "." << item.key() << "\nautograd " << p.grad() << "\nnumeric "
        << numeric;
  }
}

TEST_P(MethodTest, MergedForwardEqualsUnmergedAndUnmergeRestoresW0) {
  Linear base = MakeBase(torch::kFloat);
  const torch::Tensor w0 = base->weight.clone(), b0 = base->bias.clone();
  auto adapter = GetParam().make(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input(torch::kFloat);
  torch::Tensor unmerged = base->forward(x).detach();
  ASSERT_TRUE(base->Merge().ok());
  EXPECT_FALSE(base->Merge().ok());
  torch::Tensor merged = base->forward(x).detach();
  EXPECT_TRUE(torch::allclose(merged, unmerged, 1e-5, 1e-5)) << GetParam().name;
  ASSERT_TRUE(base->Unmerge().ok());
  EXPECT_TRUE(torch::allclose(base->weight, w0, 1e-5, 1e-6)) << GetParam().name;
  EXPECT_TRUE(torch::allclose(base->bias, b0, 1e-5, 1e-6)) << GetParam().name;
  EXPECT_TRUE(torch::allclose(base->forward(x), unmerged, 1e-5, 1e-5));
}

TEST_P(MethodTest, MergeWithoutBiasLeavesNoBiasBehind) {
  Linear base = MakeBase(torch::kFloat, /*with_bias=*/false);
  const torch::Tensor w0 = base->weight.clone();
  auto adapter = GetParam().make(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  const auto names_before = base->named_parameters(/*recurse=*/false).keys();
  torch::Tensor x = Input(torch::kFloat);
  torch::Tensor unmerged = base->forward(x).detach();
  ASSERT_TRUE(base->Merge().ok());
  EXPECT_TRUE(torch::allclose(base->forward(x), unmerged, 1e-5, 1e-5)) << GetParam().name;
  ASSERT_TRUE(base->Unmerge().ok());
  EXPECT_FALSE(base->bias.defined()) << GetParam().name;
  EXPECT_EQ(base->named_parameters(/*recurse=*/false).keys(), names_before);
  EXPECT_TRUE(torch::allclose(base->weight, w0, 1e-5, 1e-6)) << GetParam().name;
  // Detaching a merged layer hands back W0, not the merged weight.
  ASSERT_TRUE(base->Merge().ok());
  base->Detach();
  EXPECT_FALSE(base->merged());
  EXPECT_FALSE(base->bias.defined());
  EXPECT_TRUE(torch::allclose(base->weight, w0, 1e-5, 1e-6)) << GetParam().name;
}

TEST_P(MethodTest, ExportImportIsBitExact) {
  Linear base = MakeBase(torch::kFloat);
  auto adapter = GetParam().make(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input(torch::kFloat);
  const auto tensors = adapter->ExportTensors();
  Linear other = MakeBase(torch::kFloat);
  {
    torch::NoGradGuard no_grad;
    other->weight.copy_(base->weight);
    other->bias.copy_(base->bias);
  }
  auto fresh = GetParam().make(*other);
  ASSERT_TRUE(fresh->ImportTensors(tensors).ok());
  other->Attach(fresh, "adapter");
  EXPECT_TRUE(torch::equal(other->forward(x), base->forward(x))) << GetParam().name;
  auto missing = tensors;
  missing.erase(missing.begin());
  EXPECT_NE(fresh->ImportTensors(missing).message().find("missing tensor"), std::string::npos);
  auto misshaped = tensors;
  misshaped.begin()->second = torch::zeros({1, 2});
  EXPECT_NE(fresh->ImportTensors(misshaped).message().find("has shape [1, 2]"), std::string::npos);
}

TEST_P(MethodTest, ParameterCountMatchesMethodsMd) {
  Linear base = MakeBase();
  auto adapter = GetParam().make(*base);
  EXPECT_EQ(adapter->NumTrainable(), GetParam().count) << GetParam().name;
  int64_t counted = 0;
  for (const auto& p : adapter->parameters()) counted += p.numel();
  EXPECT_EQ(counted, GetParam().count);
}

INSTANTIATE_TEST_SUITE_P(AllMethods, MethodTest, ::testing::ValuesIn(Methods()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Lora, InitDistributions) {
  torch::manual_seed(0);
  Linear base(1024, 64, false);
  LoraAdapter kaiming(*base, {.r = 16});
  EXPECT_LE(kaiming.lora_A.abs().max().item<double>(), 1.0 / std::sqrt(1024.0));
  EXPECT_GT(kaiming.lora_A.abs().max().item<double>(), 0.9 / std::sqrt(1024.0));
  EXPECT_TRUE(torch::equal(kaiming.lora_B, torch::zeros_like(kaiming.lora_B)));
  LoraAdapter gaussian(*base, {.r = 16, .gaussian_init = true});
  EXPECT_NEAR(gaussian.lora_A.std().item<double>(), 1.0 / 16, 0.002);
}

TEST(Lora, DropoutOnlyOnTheAdapterBranch) {
  torch::manual_seed(1);
  Linear base = MakeBase();
  auto adapter =
      std::make_shared<LoraAdapter>(*base, LoraOptions{.r = kRank, .alpha = 6, .dropout = 0.5});
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input();
  base->train();
  // B = 0: whatever the dropout mask, the output is the undropped base.
  EXPECT_TRUE(
      torch::equal(base->forward(x), torch::nn::functional::linear(x, base->weight, base->bias)));
  Perturb(*adapter);
  base->eval();
  torch::Tensor eval_out = base->forward(x);
  base->train();
  EXPECT_FALSE(torch::allclose(base->forward(x), eval_out));
}

TEST(Dora, ReusesTheBaseOutputWithoutDropout) {
  torch::manual_seed(2);
  Linear base = MakeBase();
  LoraOptions o{.r = kRank, .alpha = 6, .dropout = 0.3};
  auto adapter = std::make_shared<DoraAdapter>(*base, o);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input();
  base->eval();  // dropout off: the reuse path
  torch::Tensor reuse = base->forward(x);
  // The dropout path with p → its general formula computes x·W0ᵀ again; with dropout disabled by
  // eval mode both must agree with the closed form.
  torch::Tensor v = base->weight + 2.0 * adapter->lora_B.matmul(adapter->lora_A);
  torch::Tensor w = (adapter->magnitude / v.norm(2, 1)).unsqueeze(1) * v;
  EXPECT_TRUE(torch::allclose(reuse, x.matmul(w.t()) + base->bias, 1e-12, 1e-12));
  // The general path (dropout on, so x̃·W0ᵀ is recomputed) with p = 1e-12 keeps every element
  // and scales by 1/(1 − 1e-12): it must agree with the reuse path to that precision.
  auto general =
      std::make_shared<DoraAdapter>(*base, LoraOptions{.r = kRank, .alpha = 6, .dropout = 1e-12});
  {
    torch::NoGradGuard no_grad;  // the same double tensors (ExportTensors would round to fp32)
    general->lora_A.copy_(adapter->lora_A);
    general->lora_B.copy_(adapter->lora_B);
    general->magnitude.copy_(adapter->magnitude);
  }
  general->train();
  torch::Tensor recomputed = general->Forward(x, base->weight, base->bias);
  EXPECT_TRUE(torch::allclose(recomputed, reuse, 1e-9, 1e-9));
  EXPECT_FALSE(torch::equal(recomputed, reuse)) << "the two paths should differ in rounding only";
  // Delta on the reuse path (base given) equals h − base of the general path.
  torch::Tensor plain = torch::nn::functional::linear(x, base->weight, base->bias);
  EXPECT_TRUE(torch::allclose(adapter->Delta(x, plain, base->weight, base->bias) + plain,
                              recomputed, 1e-9, 1e-9));
}

TEST(Dora, ZeroRowDoesNotGiveNaN) {
  Linear base(4, 3, false, torch::TensorOptions().dtype(torch::kDouble));
  DoraAdapter dora(*base, {.r = 2, .alpha = 2});
  torch::Tensor h = dora.Forward(torch::randn({5, 4}, torch::kDouble), base->weight, base->bias);
  EXPECT_FALSE(torch::isnan(h).any().item<bool>());
}

TEST(Hut, RobertaLargeQandVCountIs884736) {
  // 24 layers, q_proj and v_proj (1024 x 1024), r = 8: r·(in + out) + 2·out per module.
  Linear layer(1024, 1024, true);
  HutAdapter hut(*layer, {.r = 8});
  EXPECT_EQ(24 * 2 * hut.NumTrainable(), 884736);
}

TEST(AdaDhp, FreezeReturnsExactlyToTheBaseAndStaysFrozen) {
  torch::manual_seed(3);
  Linear base = MakeBase();
  auto adapter = std::make_shared<AdaDhpAdapter>(*base);
  Perturb(*adapter);
  base->Attach(adapter, "adapter");
  torch::Tensor x = Input();
  (base->forward(x).sum()).backward();
  adapter->Freeze();
  EXPECT_TRUE(adapter->frozen());
  EXPECT_FALSE(adapter->adadhp_l.requires_grad());
  EXPECT_FALSE(adapter->adadhp_l.grad().defined());
  EXPECT_TRUE(torch::equal(adapter->adadhp_l, torch::ones({kIn}, torch::kDouble)));
  EXPECT_TRUE(
      torch::equal(base->forward(x), torch::nn::functional::linear(x, base->weight, base->bias)));
}

}  // namespace
}  // namespace peftd::adapters
