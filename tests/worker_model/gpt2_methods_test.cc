// Every method, plain and under the token gate, on GPT-2's Conv1D layers (c_attn, attn.c_proj,
// c_fc, mlp.c_proj) equals its closed form written in Conv1D orientation from the checkpoint's
// (in, out) weight, in double precision: LoRA's update enters as W_conv + s·(B·A)ᵀ, which is how
// PEFT merges a fan_in_fan_out layer, so adapter tensors in the usual (r, in) / (out, r) layout
// mean on our GPT-2 what they mean in PEFT's. Also: the adapter folder of a GPT-2 says
// fan_in_fan_out: true, keeps PEFT's keys and shapes, and loads back to the same logits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "adapters/peft_files.h"
#include "adapters/peft_model.h"
#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "tests/worker_model/family_methods.h"
#include "worker/model/gpt2.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/tiny_gpt2.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::AdapterConfig;
using adapters::MethodKind;

using testing_methods::kRank;

class Gpt2Fixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("peftd_gpt2_methods_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyGpt2Model(dir_->string()).ok());
    conv_ = new std::map<std::string, torch::Tensor>(
        *adapters::LoadTensors((*dir_ / "model.safetensors").string()));
  }
  static void TearDownTestSuite() { fs::remove_all(*dir_); }

  static Gpt2 LoadDouble() {
    LoadOptions o;
    o.dtype = torch::kDouble;
    auto m = LoadGpt2(dir_->string(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  }
  static AdapterConfig Config(MethodKind method, bool gate) {
    AdapterConfig c = testing_methods::MethodConfig(method, gate, {"c_attn", "c_proj", "c_fc"});
    c.fan_in_fan_out = true;
    return c;
  }
  static fs::path* dir_;
  static std::map<std::string, torch::Tensor>* conv_;
};
fs::path* Gpt2Fixture::dir_ = nullptr;
std::map<std::string, torch::Tensor>* Gpt2Fixture::conv_ = nullptr;

class Gpt2MethodsTest : public Gpt2Fixture,
                        public ::testing::WithParamInterface<std::tuple<MethodKind, bool>> {};
class Gpt2AdapterFileTest : public Gpt2Fixture {};

using testing_methods::ClosedForm;

TEST_P(Gpt2MethodsTest, EveryConv1DModuleEqualsItsClosedForm) {
  const auto [method, gated] = GetParam();
  Gpt2 model = LoadDouble();
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), Config(method, gated), 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  ASSERT_EQ((*peft)->module_names().size(), 8u);  // 4 per block, 2 blocks
  const auto& linears = (*peft)->linears();
  for (const std::string name : {"transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_proj",
                                 "transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_proj"}) {
    SCOPED_TRACE(name);
    adapters::LinearImpl* linear = linears.at(name);
    const std::map<std::string, torch::Tensor> p = testing_methods::PerturbAdapter(linear);
    const torch::Tensor wc = conv_->at(name + ".weight").to(torch::kDouble);
    const torch::Tensor b = conv_->at(name + ".bias").to(torch::kDouble);
    torch::Tensor x = torch::randn({2, 5, wc.size(0)}, torch::kDouble);
    torch::Tensor expected = ClosedForm(method, p, x, wc.t(), b);
    if (gated) {
      expected = testing_methods::GateHalfTheTokens(linear, x.matmul(wc) + b, expected);
      (*peft)->gate_context().token_mask = torch::ones({2, 5}, torch::kLong);
    }
    torch::NoGradGuard no_grad;
    torch::Tensor got = linear->forward(x);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-10);
    EXPECT_GT((expected - (x.matmul(wc) + b)).abs().max().item<double>(), 1e-3)
        << "the perturbed adapter changes the output";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, Gpt2MethodsTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "");
    });

TEST_F(Gpt2AdapterFileTest, IsPeftsGpt2LayoutAndLoadsBack) {
  Gpt2 model = LoadDouble();
  torch::manual_seed(3);
  AdapterConfig c = Config(MethodKind::kLora, false);
  c.targets.target_modules = {"c_attn"};
  auto peft = adapters::PeftModel::Apply(model.get(), c, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : (*peft)->TrainableTensors()) t.add_(torch::randn_like(t) * 0.3);
  }
  const fs::path out = *dir_ / "adapter";
  ASSERT_TRUE(adapters::SaveAdapter(**peft, out.string()).ok());
  auto config = nlohmann::json::parse(std::ifstream(out / "adapter_config.json"));
  EXPECT_EQ(config["fan_in_fan_out"], true);
  EXPECT_EQ(config["target_modules"], nlohmann::json::array({"c_attn"}));
  auto tensors = *adapters::LoadTensors((out / "adapter_model.safetensors").string());
  EXPECT_EQ(tensors.size(), 4u);
  EXPECT_EQ(tensors.at("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").sizes(),
            (std::vector<int64_t>{kRank, 64}));
  EXPECT_EQ(tensors.at("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight").sizes(),
            (std::vector<int64_t>{192, kRank}));
  auto read = adapters::ReadAdapterConfig(out.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->fan_in_fan_out);

  torch::Tensor ids = torch::tensor({{5, 17, 300, 42}}, torch::kLong);
  torch::NoGradGuard no_grad;
  torch::Tensor trained = model->forward(ids, {});
  Gpt2 fresh = LoadDouble();
  auto loaded = adapters::LoadAdapter(fresh.get(), out.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // The file holds fp32: the reloaded adapter is the trained one rounded to float.
  EXPECT_LT((fresh->forward(ids, {}) - trained).abs().max().item<double>(), 1e-5);
  EXPECT_GT((fresh->forward(ids, {}) - LoadDouble()->forward(ids, {})).abs().max().item<double>(),
            1e-4);
}

}  // namespace
}  // namespace peftd::model
