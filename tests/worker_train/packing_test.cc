// Packing in the model, in double precision: a packed batch trains exactly as its records one by
// one. For every method (and the gated LoRA), the summed loss and the adapter gradients of a
// packed batch equal the sums over its records run alone, and each record's own loss and
// gradients (the packed batch with only that record's labels) equal those of the record alone.
#include "worker/data/packing.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
using adapters::MethodKind;

constexpr int64_t kRowLength = 16;
constexpr int64_t kIgnore = -100;

const fs::path& TinyDir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("peftd_packing" + std::to_string(::getpid()));
    fs::remove_all(d);
    EXPECT_TRUE(model::WriteTinyModel(d.string()).ok());
    return d;
  }();
  return dir;
}

// Records of 11, 9, 6, 4 and 3 tokens; the second has a 5-token prompt without loss. Packed into
// rows of 16 (best fit decreasing): {11, 4}, {9, 6}, {3}: two full rows and one padded.
std::vector<Example> Records() {
  std::vector<Example> out;
  int64_t x = 17;
  for (int len : {11, 9, 6, 4, 3}) {
    Example e;
    for (int j = 0; j < len; ++j) {
      e.input_ids.push_back(x);
      x = (5 * x + 11) % 400 + 20;
    }
    if (len == 9) {
      e.labels = e.input_ids;
      for (int j = 0; j < 5; ++j) e.labels[j] = kIgnore;
    }
    out.push_back(e);
  }
  return out;
}

struct Case {
  MethodKind kind;
  bool gated;
};

std::unique_ptr<PeftLlama> MakeModel(const Case& c) {
  const std::string dir = TinyDir().string();
  torch::manual_seed(7);
  auto m = model::LoadLlama(dir);
  EXPECT_TRUE(m.ok()) << m.status();
  (*m)->to(torch::kDouble);
  adapters::AdapterConfig config;
  config.method = c.kind;
  config.lora = {.r = 4, .alpha = 8};
  config.adalora = {.init_r = 4, .alpha = 8};
  config.adalora_schedule = {.target_r = 2, .tinit = 5, .tfinal = 5, .delta_t = 2};
  config.hut = {.r = 4};
  if (c.gated) config.gate = adapters::GateOptions{};
  config.targets.target_modules = {"q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"};
  auto peft = adapters::PeftModel::Apply(m->get(), config, 100);
  EXPECT_TRUE(peft.ok()) << peft.status();
  auto model = std::make_unique<PeftLlama>(*m, std::move(*peft));
  // Away from the initialisation (LoRA's B = 0 gives A no gradient).
  torch::NoGradGuard no_grad;
  for (TrainableTensor& t : model->Trainable()) t.tensor.add_(torch::randn_like(t.tensor) * 0.1);
  model->SetTraining(true);
  return model;
}

struct Outcome {
  double loss = 0;
  std::vector<torch::Tensor> grads;
};

Outcome Step(PeftLlama& model, const Batch& batch) {
  Outcome out;
  LossOutput loss = model.Forward(batch);
  loss.loss_sum.backward();
  out.loss = loss.loss_sum.item<double>();
  for (TrainableTensor& t : model.Trainable()) {
    out.grads.push_back(t.tensor.grad().defined() ? t.tensor.grad().clone()
                                                  : torch::zeros_like(t.tensor));
    if (t.tensor.grad().defined()) t.tensor.mutable_grad().zero_();
  }
  return out;
}

void ExpectSame(const Outcome& got, const Outcome& want, const std::string& what) {
  EXPECT_NEAR(got.loss, want.loss, 1e-9 * std::max(1.0, std::abs(want.loss))) << what;
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t i = 0; i < got.grads.size(); ++i) {
    const double scale = std::max(1.0, want.grads[i].abs().max().item<double>());
    EXPECT_LT((got.grads[i] - want.grads[i]).abs().max().item<double>(), 1e-9 * scale)
        << what << ", trainable tensor " << i;
  }
}

// The records of a collated packed batch, as Examples of their own (the row's tokens and
// labels of each sequence id that has real tokens), with their sequence ids.
std::vector<std::pair<int64_t, Example>> Unpack(const Batch& batch) {
  std::vector<std::pair<int64_t, Example>> out;
  const int64_t b = batch.input_ids.size(0), t = batch.input_ids.size(1);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < t; ++j) {
      if (batch.attention_mask[i][j].item<int64_t>() == 0) continue;
      const int64_t seq = batch.sequence_ids[i][j].item<int64_t>();
      if (out.empty() || out.back().first != seq) out.push_back({seq, Example{}});
      out.back().second.input_ids.push_back(batch.input_ids[i][j].item<int64_t>());
      out.back().second.labels.push_back(
          out.back().second.labels.empty() ? kIgnore : batch.labels[i][j].item<int64_t>());
    }
  }
  return out;
}

class PackingTest : public ::testing::TestWithParam<Case> {};

TEST_P(PackingTest, APackedBatchTrainsAsItsRecordsOneByOne) {
  torch::set_num_threads(1);
  data::PackingStats stats;
  const std::vector<Example> rows = data::PackExamples(Records(), kRowLength, 3, &stats);
  ASSERT_EQ(rows.size(), 3u);
  std::vector<const Example*> all;
  for (const Example& r : rows) all.push_back(&r);
  const Batch packed = Collate(all, /*pad_id=*/0, false);
  ASSERT_TRUE(packed.sequence_ids.defined());
  const auto records = Unpack(packed);
  ASSERT_EQ(records.size(), 5u);

  auto model = MakeModel(GetParam());
  const Outcome whole = Step(*model, packed);
  Outcome sum;
  for (const auto& [seq, record] : records) {
    const Outcome alone = Step(*model, Collate({&record}, 0, false));
    // The packed batch with every other record's labels removed.
    Batch only = packed;
    only.labels = packed.labels.clone();
    only.labels.masked_fill_(packed.sequence_ids.ne(seq), kIgnore);
    only.num_targets =
        only.labels.narrow(1, 1, only.labels.size(1) - 1).ne(kIgnore).sum().item<int64_t>();
    ExpectSame(Step(*model, only), alone, "record " + std::to_string(seq));
    sum.loss += alone.loss;
    if (sum.grads.empty()) {
      sum.grads = alone.grads;
    } else {
      for (size_t i = 0; i < sum.grads.size(); ++i) sum.grads[i] = sum.grads[i] + alone.grads[i];
    }
  }
  ExpectSame(whole, sum, "the packed batch");
  EXPECT_EQ(packed.num_targets, [&] {
    int64_t n = 0;
    for (const auto& [seq, record] : records) n += Collate({&record}, 0, false).num_targets;
    return n;
  }());

  // The same rows without the record boundaries are another computation: the test can fail.
  Batch unbounded = packed;
  unbounded.position_ids = torch::Tensor();
  unbounded.sequence_ids = torch::Tensor();
  EXPECT_GT(std::abs(Step(*model, unbounded).loss - whole.loss), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, PackingTest,
    ::testing::Values(Case{MethodKind::kLora, false}, Case{MethodKind::kLora, true},
                      Case{MethodKind::kDora, false}, Case{MethodKind::kAdaLora, false},
                      Case{MethodKind::kHut, false}, Case{MethodKind::kAdaDhp, false}),
    [](const auto& info) {
      return std::string(adapters::MethodName(info.param.kind)) + (info.param.gated ? "_S" : "");
    });

}  // namespace
}  // namespace peftd::train
