// RoBERTa's fused paths (q/k/v as one GEMM, the attention as one bidirectional AttentionCore node
// with padding skipped, the last layer computed at the first token only) against the reference
// paths (projection by projection, the ATen attention with HF's mask, every position): class
// logits and the gradients of every trainable tensor, the classifier included, in double
// precision, for every method plain and gated, on a batch with a right-padded row. The last layer
// keeps every position when a module after its attention carries an adapter.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "adapters/peft_model.h"
#include "tests/worker_model/family_methods.h"
#include "worker/model/roberta.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/tiny_roberta.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::MethodKind;

struct Outcome {
  torch::Tensor logits;
  std::vector<torch::Tensor> grads;
};

class RobertaFusedTest
    : public ::testing::TestWithParam<std::tuple<MethodKind, bool, bool /*adapt dense*/>> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_roberta_fused_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    ASSERT_TRUE(WriteTinyRobertaModel(dir_.string()).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  Outcome Run(Roberta& model, adapters::PeftModel& peft) {
    peft.gate_context().token_mask = mask_;
    Outcome out;
    out.logits = model->forward(ids_, mask_);
    torch::manual_seed(3);
    (out.logits * torch::randn_like(out.logits)).sum().backward();
    for (auto& p : model->parameters()) {
      if (!p.requires_grad()) continue;
      EXPECT_TRUE(p.grad().defined());
      out.grads.push_back(p.grad().clone());
      p.mutable_grad().zero_();
    }
    return out;
  }

  fs::path dir_;
  torch::Tensor ids_ = torch::tensor(
      {{0, 17, 300, 42, 7, 99, 510, 3, 255, 2}, {0, 5, 17, 300, 42, 6, 2, 1, 1, 1}}, torch::kLong);
  torch::Tensor mask_ =
      torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 0, 0, 0}}, torch::kLong);
};

TEST_P(RobertaFusedTest, LogitsAndGradientsEqualTheReferencePaths) {
  const auto [method, gated, adapt_dense] = GetParam();
  LoadOptions o;
  o.dtype = torch::kDouble;
  auto model = LoadRoberta(dir_.string(), o);
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<std::string> targets = {"query", "value"};
  if (adapt_dense) targets.push_back("intermediate.dense");
  adapters::AdapterConfig config = testing_methods::MethodConfig(method, gated, targets);
  config.task_type = "SEQ_CLS";
  config.modules_to_save = {"classifier"};
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model->get(), config, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  for (const auto& [name, linear] : (*peft)->linears()) testing_methods::PerturbAdapter(linear);

  {
    torch::NoGradGuard no_grad;
    (*peft)->gate_context().token_mask = mask_;
    EXPECT_EQ((*model)->Hidden(ids_, mask_, /*first_rows_only=*/true).size(1),
              adapt_dense ? ids_.size(1) : 1);
  }
  const Outcome fused = Run(*model, **peft);
  auto* layer = (*model)->layers[0]->as<RobertaLayerImpl>();
  EXPECT_EQ(layer->qkv.last_fused(), method != MethodKind::kHut && method != MethodKind::kAdaDhp);
  (*model)->SetFusedPaths(false);
  const Outcome reference = Run(*model, **peft);
  EXPECT_FALSE(layer->qkv.last_fused());
  EXPECT_LT((fused.logits - reference.logits).abs().max().item<double>(), 1e-12);
  EXPECT_GT(reference.logits.abs().max().item<double>(), 1e-3);
  ASSERT_EQ(fused.grads.size(), reference.grads.size());
  ASSERT_FALSE(fused.grads.empty());
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused.grads[i], reference.grads[i], 1e-10, 1e-12))
        << "tensor " << i << ": " << (fused.grads[i] - reference.grads[i]).abs().max();
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryMethod, RobertaFusedTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool(), ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "") + (std::get<2>(info.param) ? "_dense" : "");
    });

}  // namespace
}  // namespace peftd::model
