// The encoder classifiers' fused paths (RoBERTa and DeBERTa-v3: q/k/v as one GEMM; RoBERTa's
// attention as one bidirectional AttentionCore node with the padding skipped; the last layer
// computed at the first token only) against their reference paths (projection by projection, the
// ATen attention with HF's mask, every position): class logits and the gradients of every
// trainable tensor, the classifier included, in double precision, for every method plain and
// gated, on a batch with a right-padded row. The last layer keeps every position when a module
// after its attention carries an adapter.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "adapters/peft_model.h"
#include "tests/worker_model/family_methods.h"
#include "worker/model/deberta_v2.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/roberta.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/tiny_deberta_v2.h"
#include "worker/model/tiny_roberta.h"

namespace peftd::model {
namespace {

namespace fs = std::filesystem;
using adapters::MethodKind;

struct Outcome {
  torch::Tensor logits;
  std::vector<torch::Tensor> grads;
};

const torch::Tensor& Ids() {
  static const torch::Tensor ids = torch::tensor(
      {{0, 17, 300, 42, 7, 99, 510, 3, 255, 2}, {0, 5, 17, 300, 42, 6, 2, 1, 1, 1}}, torch::kLong);
  return ids;
}
const torch::Tensor& Mask() {
  static const torch::Tensor mask =
      torch::tensor({{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 0, 0, 0}}, torch::kLong);
  return mask;
}

template <typename Model>
Outcome Run(Model& model, adapters::PeftModel& peft) {
  peft.gate_context().token_mask = Mask();
  Outcome out;
  out.logits = model->forward(Ids(), Mask());
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

// `Layer` is the family's layer type (its qkv says whether the GEMM was fused).
template <typename Layer, typename Model>
void ExpectFusedEqualsReference(Model& model, MethodKind method, bool gated,
                                std::vector<std::string> targets, bool adapt_dense) {
  if (adapt_dense) targets.push_back("intermediate.dense");
  adapters::AdapterConfig config = testing_methods::MethodConfig(method, gated, targets);
  config.task_type = "SEQ_CLS";
  config.modules_to_save = {"classifier"};
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(model.get(), config, 20);
  ASSERT_TRUE(peft.ok()) << peft.status();
  for (const auto& [name, linear] : (*peft)->linears()) testing_methods::PerturbAdapter(linear);
  {
    torch::NoGradGuard no_grad;
    (*peft)->gate_context().token_mask = Mask();
    EXPECT_EQ(model->Hidden(Ids(), Mask(), /*first_rows_only=*/true).size(1),
              adapt_dense ? Ids().size(1) : 1);
  }
  const Outcome fused = Run(model, **peft);
  auto* layer = model->layers[0]->template as<Layer>();
  EXPECT_EQ(layer->qkv.last_fused(), method != MethodKind::kHut && method != MethodKind::kAdaDhp);
  model->SetFusedPaths(false);
  const Outcome reference = Run(model, **peft);
  EXPECT_FALSE(layer->qkv.last_fused());
  EXPECT_LT((fused.logits - reference.logits).abs().max().template item<double>(), 1e-12);
  EXPECT_GT(reference.logits.abs().max().template item<double>(), 1e-3);
  ASSERT_EQ(fused.grads.size(), reference.grads.size());
  ASSERT_FALSE(fused.grads.empty());
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused.grads[i], reference.grads[i], 1e-10, 1e-12))
        << "tensor " << i << ": " << (fused.grads[i] - reference.grads[i]).abs().max();
  }
}

class EncoderFusedTest
    : public ::testing::TestWithParam<std::tuple<MethodKind, bool, bool /*adapt dense*/>> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_encoder_fused_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_P(EncoderFusedTest, RobertaEqualsItsReferencePaths) {
  const auto [method, gated, adapt_dense] = GetParam();
  ASSERT_TRUE(WriteTinyRobertaModel(dir_.string()).ok());
  LoadOptions o;
  o.dtype = torch::kDouble;
  auto model = LoadRoberta(dir_.string(), o);
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectFusedEqualsReference<RobertaLayerImpl>(*model, method, gated, {"query", "value"},
                                               adapt_dense);
}

// query_proj and key_proj also project the relative embeddings (c2p and p2c both on).
TEST_P(EncoderFusedTest, DebertaEqualsItsReferencePaths) {
  const auto [method, gated, adapt_dense] = GetParam();
  ASSERT_TRUE(WriteTinyDebertaV2Model(dir_.string()).ok());
  LoadOptions o;
  o.dtype = torch::kDouble;
  auto model = LoadDebertaV2(dir_.string(), o);
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectFusedEqualsReference<DebertaV2LayerImpl>(
      *model, method, gated, {"query_proj", "key_proj", "value_proj"}, adapt_dense);
}

INSTANTIATE_TEST_SUITE_P(
    EveryMethod, EncoderFusedTest,
    ::testing::Combine(::testing::Values(MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora,
                                         MethodKind::kHut, MethodKind::kAdaDhp),
                       ::testing::Bool(), ::testing::Bool()),
    [](const auto& info) {
      return std::string(adapters::MethodName(std::get<0>(info.param))) +
             (std::get<1>(info.param) ? "_S" : "") + (std::get<2>(info.param) ? "_dense" : "");
    });

}  // namespace
}  // namespace peftd::model
