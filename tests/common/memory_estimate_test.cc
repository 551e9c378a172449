// The peak-memory estimate (issue 12: lora.r 2e9 grew a worker to 8 GB on its way to exhausting
// the host). Exact parts where the model is a closed form, the shape of the rest, saturation, and
// the refusal's message. tests/worker_run/memory_estimate_integration_test compares it with the
// peak RSS of real runs.
#include "common/memory_estimate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/job_spec.h"

namespace peftd {
namespace {

using testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

model::ModelConfig TwoLayers() {
  model::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  return c;
}

// LLaMA-2-7B's shape (checkpoint in bf16).
model::ModelConfig Llama7B() {
  model::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 128;
  c.torch_dtype = "bfloat16";
  return c;
}

v1::JobSpec Spec(int r, int batch, int seq) {
  v1::JobSpec s;
  s.set_base_model("m");
  s.set_method(v1::LORA);
  s.set_training_dataset_id("ds-1");
  s.mutable_lora()->set_r(r);
  s.set_batch_size(batch);
  s.set_max_seq_len(seq);
  return WithDefaults(s);
}

MemoryEstimate Estimate(const v1::JobSpec& spec, const model::ModelConfig& config,
                        int64_t data = 0) {
  EXPECT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  auto resolved = ResolveSpecOnModel(spec, config);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  return EstimatePeakMemory(spec, *resolved, data);
}

TEST(MemoryEstimate, WeightsAdapterAndDataAreClosedForms) {
  const model::ModelConfig c = TwoLayers();
  const MemoryEstimate e = Estimate(Spec(8, 2, 8), c, 1000);
  EXPECT_EQ(e.weights, c.NumParameters() * 4);
  EXPECT_EQ(e.loading, c.NumParameters() * 4);  // an fp32 checkpoint
  // LoRA r = 8 on q (64 -> 64) and v (64 -> 32) of 2 layers: 2·8·(128 + 96) parameters, each
  // with a gradient, two moments and AdamW's construction copy.
  EXPECT_EQ(e.adapter, 2 * 8 * (128 + 96) * 4 * 5);
  EXPECT_EQ(e.data, 1000 * 9);
  EXPECT_EQ(e.runtime, kRuntimeOverheadBytes);
  EXPECT_EQ(e.total(),
            std::max(e.weights + e.loading, e.weights + e.adapter + e.activations + e.logits) +
                e.data + e.runtime);
}

TEST(MemoryEstimate, ActivationsFollowBatchSequenceAndTheFirstAdaptedLayer) {
  const model::ModelConfig c = Llama7B();
  const MemoryEstimate base = Estimate(Spec(8, 4, 1024), c);
  const MemoryEstimate batch = Estimate(Spec(8, 8, 1024), c);
  const MemoryEstimate seq = Estimate(Spec(8, 4, 2048), c);
  EXPECT_NEAR(static_cast<double>(batch.activations) / base.activations, 2.0, 0.01);
  // Attention probabilities grow with T²: more than double for twice the tokens.
  EXPECT_GT(static_cast<double>(seq.activations) / base.activations, 2.5);
  // Layers below the first adapted one keep nothing for backward.
  v1::JobSpec top = Spec(8, 4, 1024);
  top.add_layers_to_transform(31);
  const MemoryEstimate last = Estimate(top, c);
  EXPECT_LT(last.activations * 8, base.activations);
  // The estimate of a 7B model at batch 4 x 1024: 25 GiB of fp32 weights, the rest activations.
  EXPECT_NEAR(static_cast<double>(base.weights) / kGiB, 25.1, 0.1);
  EXPECT_GT(base.activations, 20 * kGiB);
  EXPECT_LT(base.activations, 80 * kGiB);
}

TEST(MemoryEstimate, AnAdaptedLmHeadKeepsFullLogits) {
  v1::JobSpec head = Spec(8, 4, 512);
  head.add_target_modules("lm_head");
  const MemoryEstimate fused = Estimate(Spec(8, 4, 512), Llama7B());
  const MemoryEstimate full = Estimate(head, Llama7B());
  EXPECT_LE(fused.logits, (int64_t{128} << 20) + 2 * 4 * 512 * 4096 * 4);
  EXPECT_GE(full.logits, int64_t{3} * 4 * 512 * 32000 * 4);
}

TEST(MemoryEstimate, ALargeInRangeRankOnABigModelIsRefusedByTheEstimate) {
  auto all = [](v1::JobSpec s) {
    s.clear_target_modules();
    for (const char* m :
         {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
      s.add_target_modules(m);
    }
    return s;
  };
  const int64_t worker = 128 * kGiB;
  const MemoryEstimate small = Estimate(all(Spec(8, 8, 512)), Llama7B());
  EXPECT_TRUE(CheckMemoryFits(small, worker, "the largest worker (w-1)").ok()) << small.Summary();
  const MemoryEstimate big = Estimate(all(Spec(4096, 8, 512)), Llama7B());  // r at its cap
  const absl::Status st = CheckMemoryFits(big, worker, "the largest worker (w-1)");
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(st.message()),
              testing::StartsWith(absl::StrCat("the job needs an estimated ", GiB(big.total()),
                                               " of memory at its peak (weights 25.1")));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("more than the largest worker (w-1) has: 128.0 GiB. Lower batch_size"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("for batch_size 8 x max_seq_len 512"));
}

TEST(MemoryEstimate, SaturatesInsteadOfOverflowing) {
  model::ModelConfig c = Llama7B();
  c.num_hidden_layers = 4096;
  c.vocab_size = int64_t{1} << 24;
  v1::JobSpec s = Spec(4096, 65536, 1 << 20);
  s.add_target_modules("re:.*");
  const MemoryEstimate e = Estimate(s, c, int64_t{1} << 40);
  EXPECT_GT(e.total(), 0);
  EXPECT_EQ(e.activations, int64_t{1000000000000000000});  // saturated at 1e18 bytes
  EXPECT_FALSE(CheckMemoryFits(e, int64_t{1} << 60, "x").ok());
}

TEST(MemoryEstimate, GiBHasOneDecimal) {
  EXPECT_EQ(GiB(3 * kGiB / 2), "1.5 GiB");
  EXPECT_EQ(GiB(0), "0.0 GiB");
}

}  // namespace
}  // namespace peftd

namespace peftd {
namespace {

TEST(MemoryEstimate, Gpt2CountsItsConv1DModules) {
  auto c = model::ParseModelConfig(R"({"architectures": ["GPT2LMHeadModel"],
      "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024})");
  ASSERT_TRUE(c.ok()) << c.status();
  v1::JobSpec spec = Spec(8, 4, 512);
  spec.clear_target_modules();
  spec.add_target_modules("c_attn");
  const MemoryEstimate e = Estimate(spec, *c);
  EXPECT_EQ(e.weights, 124439808 * 4);
  // LoRA r = 8 on c_attn (768 -> 2304) of 12 blocks.
  EXPECT_EQ(e.adapter, 12 * 8 * (768 + 2304) * 4 * 5);
  // Adapting c_attn keeps its input per block: the same job on c_fc too keeps more.
  v1::JobSpec more = spec;
  more.add_target_modules("c_fc");
  EXPECT_GT(Estimate(more, *c).activations, e.activations);
  v1::JobSpec proj = spec;
  proj.clear_target_modules();
  proj.add_target_modules("mlp.c_proj");
  EXPECT_GT(Estimate(proj, *c).activations, 0);
  EXPECT_LT(e.total(), 4 * kGiB);
}

}  // namespace
}  // namespace peftd
