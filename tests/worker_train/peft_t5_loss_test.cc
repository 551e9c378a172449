// The SEQ_2_SEQ_LM loss of PeftT5 in double precision: batches of input/target examples
// (CollateSeq2Seq: inputs padded with their mask, targets padded with -100), the decoder reading
// the targets shifted right, and the summed cross-entropy of the target tokens, equal to HF's
// mean loss times the target count, with the same adapter gradients as the full-logits
// computation; for the untied (v1.1) and the tied, scaled (v1.0) head.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "worker/model/t5_loader.h"
#include "worker/model/tiny_t5.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_t5.h"

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

class PeftT5LossTest : public ::testing::TestWithParam<bool> {};

TEST_P(PeftT5LossTest, TargetTokensCarryTheLossAndGradientsMatchFullLogits) {
  torch::set_num_threads(1);
  const fs::path dir = fs::temp_directory_path() / ("peftd_t5_loss" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(model::WriteTinyT5Model(dir.string(), 1, "float32", GetParam()).ok());
  model::LoadOptions load;
  load.dtype = torch::kDouble;
  auto m = model::LoadT5(dir.string(), load);
  ASSERT_TRUE(m.ok()) << m.status();
  adapters::AdapterConfig config;
  config.lora = {.r = 4, .alpha = 8};
  config.targets.target_modules = {"q", "v", "wo"};
  config.task_type = "SEQ_2_SEQ_LM";
  torch::manual_seed(7);
  auto peft = adapters::PeftModel::Apply(m->get(), config, 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  PeftT5 model(*m, std::move(*peft));
  {
    torch::NoGradGuard no_grad;
    for (TrainableTensor& t : model.Trainable()) t.tensor.add_(torch::randn_like(t.tensor) * 0.1);
  }
  Example a, b;
  a.input_ids = {5, 17, 300, 42, 7, 99, 510};
  a.target_ids = {8, 9, 10, 11, 510};
  b.input_ids = {1, 2, 510};
  b.target_ids = {20, 510};
  const Batch batch = Collate({&a, &b}, 511, false);
  ASSERT_EQ(batch.num_targets, 5 + 2);
  ASSERT_EQ(batch.num_tokens, 7 + 5 + 3 + 2);
  ASSERT_EQ(batch.labels.sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(batch.labels[1][2].item<int64_t>(), -100);
  EXPECT_EQ(batch.attention_mask[1].sum().item<int64_t>(), 3);

  auto grads = [&] {
    std::vector<torch::Tensor> out;
    for (TrainableTensor& t : model.Trainable()) {
      out.push_back(t.tensor.grad().clone());
      t.tensor.mutable_grad().zero_();
    }
    return out;
  };
  LossOutput ours = model.Forward(batch);
  // The gate of decoder modules (the last ones the forward ran) counts the real targets only.
  EXPECT_TRUE(model.peft().gate_context().token_mask.equal(batch.labels.ne(-100).to(torch::kLong)));
  ours.loss_sum.backward();
  const std::vector<torch::Tensor> our_grads = grads();

  // HF: logits over every target position, mean cross-entropy ignoring -100.
  torch::Tensor logits =
      model.model()->forward(batch.input_ids, batch.attention_mask, batch.labels);
  torch::Tensor hf =
      F::cross_entropy(logits.reshape({-1, logits.size(-1)}), batch.labels.reshape({-1}),
                       F::CrossEntropyFuncOptions().ignore_index(-100));
  EXPECT_NEAR(ours.loss_sum.item<double>(), hf.item<double>() * 7, 1e-10);
  (hf * 7).backward();
  const std::vector<torch::Tensor> hf_grads = grads();
  ASSERT_EQ(our_grads.size(), hf_grads.size());
  bool encoder_grad = false, decoder_grad = false;
  size_t i = 0;
  for (TrainableTensor& t : model.Trainable()) {
    EXPECT_LT((our_grads[i] - hf_grads[i]).abs().max().item<double>(), 1e-10) << t.name;
    const bool nonzero = our_grads[i].abs().max().item<double>() > 0;
    encoder_grad |= nonzero && t.name.rfind("encoder.", 0) == 0;
    decoder_grad |= nonzero && t.name.rfind("decoder.", 0) == 0;
    ++i;
  }
  EXPECT_TRUE(encoder_grad) << "the loss reaches the encoder's adapters through cross-attention";
  EXPECT_TRUE(decoder_grad);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Heads, PeftT5LossTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("TiedScaled") : std::string("Untied");
                         });

}  // namespace
}  // namespace peftd::train
