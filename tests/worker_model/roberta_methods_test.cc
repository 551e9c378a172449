// Every method, plain and under the token gate, on each kind of RoBERTa module (query, key, value,
// attention.output.dense, intermediate.dense, output.dense) equals its closed form written from the
// checkpoint's weight, in double precision; the classifier head is no target (its `dense` is not
// adapted by the pattern "dense").
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "tests/worker_model/family_methods.h"
#include "worker/model/roberta.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/tiny_roberta.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

using testing_methods::kRank;

class RobertaFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_roberta_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyRobertaModel(dir_->string()).ok());
    weights_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static Roberta LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadRoberta(dir_->string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  static AdapterConfig Config(MethodKind method, bool gate) {
    AdapterConfig c =
        testing_methods::MethodConfig(method, gate, {"query", "key", "value", "dense"});
    c.task_type = "SEQ_CLS";
    c.modules_to_save = {"classifier"};
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* weights_;
};
fs::path* RobertaFixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* RobertaFixture::weights_ = nullptr;

class RobertaMethodsTest : public RobertaFixture,
                           public ::testing::WithParamInterface<std::tuple<MethodKind, bool>> {};

using testing_methods::ClosedForm;

TEST_P(RobertaMethodsTest, EveryModuleKindEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  Roberta model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  ASSERT_EQ((*peft)->module_names().size(), 12u);  // 6 per layer, 2 layers; not the classifier
  const auto& linears = (*peft)->linears();
  for (const std::string name :
       {"roberta.encoder.layer.0.attention.self.query",
        "roberta.encoder.layer.1.attention.self.key",
        "roberta.encoder.layer.0.attention.self.value",
        "roberta.encoder.layer.1.attention.output.dense",
        "roberta.encoder.layer.0.intermediate.dense", "roberta.encoder.layer.1.output.dense"}) {
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
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, RobertaMethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

}  // namespace
}  // namespace peftd::model
