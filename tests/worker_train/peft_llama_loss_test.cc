// The causal-LM loss of PeftLlama, in double precision: the vocabulary projection sees only the
// positions that carry a label (prompt and padding rows are selected out before the GEMM), and
// the loss and adapter gradients equal HF's computation over the full logits (labels −100 on the
// prompt, shift by one, cross-entropy summed over labelled positions).
#include <gtest/gtest.h>

#include <filesystem>

#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

TEST(PeftLlamaLoss, OnlyLabelledRowsReachTheVocabularyProjection) {
  torch::set_num_threads(1);
  const fs::path dir = fs::temp_directory_path() / ("peftd_loss" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(model::WriteTinyModel(dir.string()).ok());
  torch::manual_seed(7);
  auto m = model::LoadLlama(dir.string());
  ASSERT_TRUE(m.ok()) << m.status();
  (*m)->to(torch::kDouble);
  adapters::AdapterConfig config;
  config.lora = {.r = 4, .alpha = 8};
  config.targets.target_modules = {"q_proj", "v_proj"};
  auto peft = adapters::PeftModel::Apply(m->get(), config, 10);
  ASSERT_TRUE(peft.ok()) << peft.status();
  PeftLlama model(*m, std::move(*peft));
  {
    torch::NoGradGuard no_grad;
    for (TrainableTensor& t : model.Trainable()) t.tensor.add_(torch::randn_like(t.tensor) * 0.1);
  }
  // Two records: a 12-token one whose first 8 tokens are prompt, and a 5-token one (padded).
  Example a, b;
  for (int j = 0; j < 12; ++j) a.input_ids.push_back(30 + 7 * j);
  a.labels = a.input_ids;
  for (int j = 0; j < 8; ++j) a.labels[j] = -100;
  for (int j = 0; j < 5; ++j) b.input_ids.push_back(200 + 3 * j);
  const Batch batch = Collate({&a, &b}, 0, false);
  ASSERT_EQ(batch.num_targets, 4 + 4);

  auto grads = [&] {
    std::vector<torch::Tensor> out;
    for (TrainableTensor& t : model.Trainable()) {
      out.push_back(t.tensor.grad().clone());
      t.tensor.mutable_grad().zero_();
    }
    return out;
  };
  LossOutput ours = model.Forward(batch);
  ours.loss_sum.backward();
  EXPECT_EQ(model.head_rows(), 8) << "2 × 11 shifted positions, 8 of them labelled";
  const std::vector<torch::Tensor> our_grads = grads();

  // HF: logits of every position, shift, cross-entropy with ignore_index −100.
  torch::Tensor logits = model.model()->forward(batch.input_ids, batch.attention_mask);
  const int64_t t = logits.size(1);
  torch::Tensor hf =
      F::cross_entropy(logits.narrow(1, 0, t - 1).reshape({-1, logits.size(-1)}),
                       batch.labels.narrow(1, 1, t - 1).reshape({-1}),
                       F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
  hf.backward();
  const std::vector<torch::Tensor> hf_grads = grads();
  EXPECT_NEAR(ours.loss_sum.item<double>(), hf.item<double>(), 1e-10 * hf.item<double>());
  ASSERT_EQ(our_grads.size(), hf_grads.size());
  for (size_t i = 0; i < our_grads.size(); ++i) {
    EXPECT_TRUE(torch::allclose(our_grads[i], hf_grads[i], 1e-9, 1e-12)) << "tensor " << i;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd::train
