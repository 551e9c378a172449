// q/k/v and gate/up as one GEMM each (FusedProjection): the fused model's logits and adapter
// gradients equal the projection-by-projection computation in double precision for every method,
// gated and not; the per-projection weights are views of one buffer (so loading, merging and
// export by HF name still work); and below the lowest adapted layer no backward node exists.
#include "worker/model/fused_projection.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "adapters/norm_probe.h"
#include "adapters/peft_model.h"
#include "worker/model/llama.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

ModelConfig Config(int layers) {
  ModelConfig c = TinyConfig();
  c.num_hidden_layers = layers;
  c.attention_bias = true;  // q, k, v with a bias; the MLP without
  return c;
}

Llama RandomModel(const ModelConfig& c) {
  torch::manual_seed(3);
  Llama m(c);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m->parameters()) p.normal_(0, 0.05);
  }
  m->to(torch::kDouble);  // new storage for every weight: the fusion must follow
  return m;
}

torch::Tensor Ids() {
  return torch::tensor({{5, 17, 300, 42, 7, 99, 3, 8}, {1, 2, 3, 4, 5, 6, 7, 9}}, torch::kLong);
}

struct Outcome {
  torch::Tensor logits;
  std::vector<torch::Tensor> grads;
};

Outcome ForwardBackward(Llama& m, adapters::PeftModel& peft) {
  torch::manual_seed(11);
  Outcome run;
  run.logits = m->forward(Ids(), {});
  torch::Tensor weights = torch::randn_like(run.logits);
  (run.logits * weights).sum().backward();
  for (auto& [name, t] : peft.TrainableTensors()) {
    EXPECT_TRUE(t.grad().defined()) << name;
    run.grads.push_back(t.grad().clone());
    t.mutable_grad().zero_();
  }
  return run;
}

struct Case {
  adapters::MethodKind method;
  bool gated;
  bool fuses;  // false: the method scales its input and needs a GEMM of its own
};

class FusedEqualsUnfused : public ::testing::TestWithParam<Case> {};

TEST_P(FusedEqualsUnfused, LogitsAndAdapterGradients) {
  const Case& c = GetParam();
  Llama m = RandomModel(Config(2));
  adapters::AdapterConfig config;
  config.method = c.method;
  config.lora = {.r = 4, .alpha = 8};
  if (c.gated) config.gate = adapters::GateOptions{};
  config.targets.target_modules = {"q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"};
  auto peft = adapters::PeftModel::Apply(m.get(), config, 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(5);
    for (auto& [name, t] : (*peft)->TrainableTensors()) t.add_(torch::randn_like(t) * 0.1);
  }
  const Outcome fused = ForwardBackward(m, **peft);
  auto* layer = m->model->layers[0]->as<DecoderLayerImpl>();
  EXPECT_EQ(layer->self_attn->qkv.last_fused(), c.fuses);
  EXPECT_EQ(layer->mlp->gate_up.last_fused(), c.fuses);
  m->model->SetFusedProjections(false);
  const Outcome reference = ForwardBackward(m, **peft);
  EXPECT_FALSE(layer->self_attn->qkv.last_fused());
  EXPECT_TRUE(torch::allclose(fused.logits, reference.logits, 1e-10, 1e-12));
  ASSERT_EQ(fused.grads.size(), reference.grads.size());
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused.grads[i], reference.grads[i], 1e-10, 1e-12))
        << "tensor " << i << ": " << (fused.grads[i] - reference.grads[i]).abs().max();
  }
}

using adapters::MethodKind;
INSTANTIATE_TEST_SUITE_P(
    EveryMethod, FusedEqualsUnfused,
    ::testing::Values(Case{MethodKind::kLora, false, true}, Case{MethodKind::kLora, true, true},
                      Case{MethodKind::kDora, false, true}, Case{MethodKind::kDora, true, true},
                      Case{MethodKind::kAdaLora, false, true},
                      Case{MethodKind::kAdaLora, true, true}, Case{MethodKind::kHut, false, false},
                      Case{MethodKind::kHut, true, false}, Case{MethodKind::kAdaDhp, false, false},
                      Case{MethodKind::kAdaDhp, true, false}));

TEST(FusedProjection, WeightsAreViewsOfOneBufferAfterLoadAndMove) {
  Llama m = RandomModel(Config(1));
  auto* attn = m->model->layers[0]->as<DecoderLayerImpl>()->self_attn.get();
  torch::Tensor before = m->forward(Ids(), {});
  // to(kDouble) gave every weight its own storage; the first forward concatenated them again.
  EXPECT_TRUE(attn->q_proj->weight.storage().is_alias_of(attn->v_proj->weight.storage()));
  EXPECT_TRUE(attn->q_proj->bias.storage().is_alias_of(attn->k_proj->bias.storage()));
  EXPECT_EQ(attn->q_proj->weight.sizes(), attn->named_parameters()["q_proj.weight"].sizes());
  // Writing a weight by name (as the loader does, with copy_) changes the fused GEMM.
  {
    torch::NoGradGuard no_grad;
    m->named_parameters()["model.layers.0.self_attn.k_proj.weight"].mul_(2);
  }
  torch::Tensor after = m->forward(Ids(), {});
  EXPECT_FALSE(torch::allclose(before, after));
  m->model->SetFusedProjections(false);
  EXPECT_TRUE(torch::allclose(after, m->forward(Ids(), {}), 1e-10, 1e-12));
}

TEST(FusedProjection, MergedLoraEqualsTheAdapter) {
  Llama m = RandomModel(Config(1));
  adapters::AdapterConfig config;
  config.lora = {.r = 4, .alpha = 8};
  config.targets.target_modules = {"q_proj", "k_proj", "up_proj"};
  auto peft = adapters::PeftModel::Apply(m.get(), config, 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : (*peft)->TrainableTensors()) t.add_(torch::randn_like(t) * 0.1);
  torch::Tensor adapted = m->forward(Ids(), {});
  for (const auto& module : m->modules()) {
    if (auto* linear = module->as<adapters::LinearImpl>(); linear && linear->adapter()) {
      ASSERT_TRUE(linear->Merge().ok());
    }
  }
  torch::Tensor merged = m->forward(Ids(), {});
  EXPECT_TRUE(m->model->layers[0]->as<DecoderLayerImpl>()->self_attn->qkv.last_fused());
  EXPECT_TRUE(torch::allclose(adapted, merged, 1e-9, 1e-11));
}

// The norm criteria of module selection (adapters/norm_probe.h) need every adapted module's input:
// the fused GEMM must feed it to each part's probe as the part's own forward would.
TEST(FusedProjection, FusedPartsRecordTheirNormsAsUnfusedOnes) {
  std::map<std::string, adapters::NormProbe::Means> by_path[2];
  for (bool fused : {true, false}) {
    Llama m = RandomModel(Config(2));
    m->model->SetFusedProjections(fused);
    adapters::AdapterConfig config;
    config.method = adapters::MethodKind::kDora;
    config.lora = {.r = 4, .alpha = 8};
    config.targets.target_modules = {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"};
    auto peft = adapters::PeftModel::Apply(m.get(), config, 10);
    ASSERT_TRUE(peft.ok()) << peft.status();
    {
      torch::NoGradGuard no_grad;
      torch::manual_seed(5);
      for (auto& [name, t] : (*peft)->TrainableTensors()) t.add_(torch::randn_like(t) * 0.1);
    }
    m->train();
    m->forward(Ids(), {}).sum().backward();
    EXPECT_EQ(m->model->layers[0]->as<DecoderLayerImpl>()->self_attn->qkv.last_fused(), fused);
    by_path[fused ? 0 : 1] = (*peft)->ModuleNorms();
  }
  ASSERT_EQ(by_path[0].size(), 2u * 5u);
  ASSERT_EQ(by_path[1].size(), by_path[0].size());
  for (const auto& [name, fused] : by_path[0]) {
    const adapters::NormProbe::Means& unfused = by_path[1].at(name);
    EXPECT_EQ(fused.tokens, Ids().numel()) << name;
    EXPECT_EQ(fused.tokens, unfused.tokens) << name;
    EXPECT_GT(fused.absolute, 0) << name;
    EXPECT_NEAR(fused.relative, unfused.relative, 1e-12) << name;
    EXPECT_NEAR(fused.absolute, unfused.absolute, 1e-12) << name;
  }
}

// Every node reachable from `root`, by name.
std::vector<std::string> NodeNames(const torch::Tensor& root) {
  std::vector<std::string> names;
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> stack = {root.grad_fn().get()};
  while (!stack.empty()) {
    torch::autograd::Node* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    names.push_back(node->name());
    for (const auto& edge : node->next_edges()) stack.push_back(edge.function.get());
  }
  return names;
}

int64_t Count(const std::vector<std::string>& names, const std::string& part) {
  int64_t n = 0;
  for (const auto& name : names) n += name.find(part) != std::string::npos ? 1 : 0;
  return n;
}

TEST(FusedProjection, NoBackwardBelowTheLowestAdaptedLayer) {
  Llama m = RandomModel(Config(4));
  adapters::AdapterConfig config;
  config.lora = {.r = 4, .alpha = 8};
  config.targets.target_modules = {"q_proj", "v_proj"};
  config.targets.layers_to_transform = {2};
  auto peft = adapters::PeftModel::Apply(m.get(), config, 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  torch::Tensor loss = m->forward(Ids(), {}).square().sum();
  const std::vector<std::string> names = NodeNames(loss);
  // Layers 2 and 3 only: one fused q/k/v node and one fused gate/up node each ...
  EXPECT_EQ(Count(names, "FusedLinearFunction"), 2 * 2);
  // ... o_proj and down_proj each, plus the vocabulary projection (lm_head or tied).
  EXPECT_EQ(Count(names, "FrozenLinearFunction"), 2 * 2 + 1);
  EXPECT_EQ(Count(names, "RmsNorm"), 2 * 2 + 1 - 1) << "layer 2's input norm sees a frozen input";
  EXPECT_EQ(Count(names, "Embedding"), 0);
  EXPECT_EQ(Count(names, "AccumulateGrad"), 4) << "lora_A and lora_B of q and v";
}

}  // namespace
}  // namespace peftd::model
