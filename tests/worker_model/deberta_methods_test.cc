// Every method, plain and under the token gate, on each kind of DeBERTa-v3 module (query_proj,
// key_proj, value_proj, attention.output.dense, intermediate.dense, output.dense) equals its closed
// form written from the checkpoint's weight, in double precision; the head is no target (the
// pattern "dense" adapts no pooler.dense). query_proj and key_proj also project the relative
// embeddings: there every method's change applies un-gated (the rows are no tokens), and the
// gate's counters see the batch's real tokens only.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "tests/worker_model/family_methods.h"
#include "worker/model/deberta_v2.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/tiny_deberta_v2.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

using testing_methods::kRank;

class DebertaFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_deberta_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyDebertaV2Model(dir_->string()).ok());
    weights_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static DebertaV2 LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadDebertaV2(dir_->string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  static AdapterConfig Config(MethodKind method, bool gate) {
    AdapterConfig c = testing_methods::MethodConfig(
        method, gate, {"query_proj", "key_proj", "value_proj", "dense"});
    c.task_type = "SEQ_CLS";
    c.modules_to_save = {"classifier"};
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* weights_;
};
fs::path* DebertaFixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* DebertaFixture::weights_ = nullptr;

class DebertaMethodsTest : public DebertaFixture,
                           public ::testing::WithParamInterface<std::tuple<MethodKind, bool>> {};

using testing_methods::ClosedForm;

TEST_P(DebertaMethodsTest, EveryModuleKindEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  DebertaV2 model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  ASSERT_EQ((*peft)->module_names().size(), 12u);  // 6 per layer, 2 layers; not the head
  const auto& linears = (*peft)->linears();
  for (const std::string name :
       {"deberta.encoder.layer.0.attention.self.query_proj",
        "deberta.encoder.layer.1.attention.self.key_proj",
        "deberta.encoder.layer.0.attention.self.value_proj",
        "deberta.encoder.layer.1.attention.output.dense",
        "deberta.encoder.layer.0.intermediate.dense", "deberta.encoder.layer.1.output.dense"}) {
    SCOPED_TRACE(name);
    adapters::LinearImpl* linear = linears.at(name);
    const std::map<std::string, torch::Tensor> p = testing_methods::PerturbAdapter(linear);
    const torch::Tensor w = weights_->at(name + ".weight").to(torch::kDouble);
    const torch::Tensor b = weights_->at(name + ".bias").to(torch::kDouble);
    torch::Tensor x = torch::randn({2, 5, w.size(1)}, torch::kDouble);
    torch::Tensor expected = ClosedForm(method, p, x, w, b);
    if (gated) {
      expected = testing_methods::GateHalfTheTokens(linear, x.matmul(w.t()) + b, expected);
      (*peft)->gate_context().token_mask = torch::ones({2, 5}, torch::kLong);
    }
    torch::NoGradGuard no_grad;
    torch::Tensor got = linear->forward(x);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-10);
    EXPECT_GT((expected - (x.matmul(w.t()) + b)).abs().max().item<double>(), 1e-3)
        << "the perturbed adapter changes the output";
    // The relative embeddings' projection: the method's closed form, un-gated whatever τ.
    torch::Tensor rel = torch::randn({16, w.size(1)}, torch::kDouble);
    if (gated) dynamic_cast<adapters::TokenGate*>(linear->adapter().get())->set_tau(1e30);
    EXPECT_LT((ProjectPositions(*linear, rel) - ClosedForm(method, p, rel, w, b))
                  .abs()
                  .max()
                  .item<double>(),
              1e-10);
  }
}

// A whole forward under the gate: with τ past every ratio the tokens take the base outputs while
// the position rows keep the method's change; the gate counts the batch's real tokens, not the
// rows of the relative embeddings.
class DebertaGateTest : public DebertaFixture, public ::testing::WithParamInterface<MethodKind> {};

TEST_P(DebertaGateTest, PositionRowsTakeTheUngatedChangeAndAreNotCounted) {
  const MethodKind method = GetParam();
  DebertaV2 model = LoadDouble();
  DebertaV2 plain = LoadDouble();
  torch::manual_seed(7);
  AdapterConfig config = Config(method, true);
  config.targets.target_modules = {"query_proj", "key_proj"};
  auto peft = adapters::PeftModel::Apply(model.get(), config, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  for (const auto& [name, linear] : (*peft)->linears()) {
    adapters::Adapter* inner = adapters::PeftModel::Unwrap(linear->adapter().get());
    torch::NoGradGuard no_grad;
    for (auto& item : inner->named_parameters()) {
      item.value().add_(torch::randn_like(item.value()) * 0.3);
    }
    dynamic_cast<adapters::TokenGate*>(linear->adapter().get())->set_tau(1e30);
  }
  torch::Tensor ids = torch::tensor({{1, 17, 300, 42, 7, 99, 2}, {1, 5, 17, 2, 0, 0, 0}});
  torch::Tensor mask = ids.ne(0).to(torch::kLong);
  (*peft)->gate_context().token_mask = mask;
  model->train();  // the gate's training window counts a forward with gradients
  torch::Tensor gated_logits = model->forward(ids, mask).detach();
  // Every token is off, so only the position rows' change can move the logits off the plain
  // model's (their closed form is checked module by module above).
  torch::Tensor plain_logits = plain->forward(ids, mask).detach();
  EXPECT_GT((gated_logits - plain_logits).abs().max().item<double>(), 1e-6);
  for (const auto& [name, linear] : (*peft)->linears()) {
    auto* gate = dynamic_cast<adapters::TokenGate*>(linear->adapter().get());
    ASSERT_NE(gate, nullptr);
    const auto counters = gate->TrainWindowCounters();
    EXPECT_EQ(counters[1].item<double>(), mask.sum().item<double>())
        << name << ": the gate counts the real tokens only";
    EXPECT_EQ(counters[0].item<double>(), 0)
        << name << ": τ past every ratio turns every token off";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, DebertaMethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

INSTANTIATE_TEST_SUITE_P(AllMethods, DebertaGateTest,
                         ::testing::Values(MethodKind::kLora, MethodKind::kDora,
                                           MethodKind::kAdaLora, MethodKind::kHut,
                                           MethodKind::kAdaDhp),
                         [](const auto& info) {
                           return std::string(adapters::MethodName(info.param)) + "_S";
                         });

}  // namespace
}  // namespace peftd::model
