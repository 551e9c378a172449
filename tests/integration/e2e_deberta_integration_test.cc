// DeBERTa-v3 end to end with the real binaries: `peftd-worker make-tiny-model --arch deberta-v2`
// writes a DebertaV2ForSequenceClassification (with its spm.model) under the server's model root,
// `peftctl models list` shows it as SEQ_CLS-only, a CAUSAL_LM job is refused at submit naming the
// field, and a SEQ_CLS job with the token gate that names no target_modules is
// admitted with PEFT's default (query_proj, value_proj), trains through peftd and a
// --local-workers child (the records tokenized by the SentencePiece model as [CLS] A [SEP]), and
// its adapter is PEFT's: the LoRA tensors under
// base_model.model.deberta.encoder.layer.N.attention.self.{query_proj,value_proj}, and the
// classifier saved whole through modules_to_save (the pooler not: PEFT leaves it frozen), which
// `peftd-worker eval` loads (the logits change). A LoRA job with export_merged on query_proj,
// key_proj and value_proj (the first two also project the relative positions) gives a merged
// DebertaV2ForSequenceClassification folder, with its spm.model, whose logits are the base's with
// the job's adapter.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/safetensors.h"
#include "nlohmann/json.hpp"
#include "peftd/v1/jobs.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/peftd_process.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::Concat;
using testing::kExamples;
using testing::kWorker;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunCommand;
using testing::RunResult;
using testing::Words;

TEST(E2eDeberta, TinyDebertaV3ClassifierTrainsThroughPeftdWithPeftsAdapterLayout) {
  const fs::path dir = testing::FreshTestDir("deberta");
  const RunResult made =
      RunCommand({kWorker, "make-tiny-model", (dir / "models" / "tiny-deberta").string(), "--arch",
                  "deberta-v2"});
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  PeftdProcess server((dir / "data").string(),
                      {"--model-root=" + (dir / "models").string(), "--local-workers=1",
                       "--heartbeat-interval=500ms", "--lease-timeout=5s"});
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;

  const RunResult models = Peftctl(server.address(), {"models", "list"});
  ASSERT_EQ(models.exit_code, 0) << models.Describe();
  std::string row;
  for (absl::string_view line : absl::StrSplit(models.out, '\n')) {
    if (absl::StartsWith(line, "tiny-deberta ")) row = std::string(line);
  }
  EXPECT_TRUE(absl::StrContains(row, "DebertaV2ForSequenceClassification")) << models.out;
  EXPECT_TRUE(absl::StrContains(row, " SEQ_CLS ")) << models.out;
  EXPECT_FALSE(absl::StrContains(row, "CAUSAL_LM")) << models.out;

  const RunResult lm =
      Peftctl(server.address(), Concat({"submit", "--train", kExamples + "/tiny-lm-train.jsonl"},
                                       Words("--model tiny-deberta --method lora --steps 2")));
  EXPECT_NE(lm.exit_code, 0) << lm.Describe();
  EXPECT_TRUE(absl::StrContains(lm.err, "task: ")) << lm.Describe();
  EXPECT_TRUE(absl::StrContains(lm.err, "use task SEQ_CLS")) << lm.Describe();

  const std::vector<std::string> data = {"--train", kExamples + "/tiny-cls-train.jsonl", "--val",
                                         kExamples + "/tiny-cls-val.jsonl"};
  const std::vector<std::string> cls =
      Words("--model tiny-deberta --task seq_cls --num-labels 2 --label-names negative,positive");
  std::ofstream(dir / "job.json") << R"({"num_threads": 1})";
  const RunResult watched = Peftctl(
      server.address(),
      Concat(Concat(Concat({"submit", "-f", (dir / "job.json").string()}, data), cls),
             Words("--method lora --gate --rank 4 --steps 8 --batch-size 4 --max-seq-len 32 "
                   "--lr 3e-3 --watch")));
  ASSERT_EQ(watched.exit_code, 0) << watched.Describe() << testing::ReadFile(dir / "peftd.log");

  const RunResult list = Peftctl(server.address(), {"--json", "list"});
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(testing::ParseJson(list.out, &jobs)) << list.Describe();
  ASSERT_EQ(jobs.jobs_size(), 1);
  const v1::Job& job = jobs.jobs(0);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.DebugString();
  ASSERT_EQ(job.spec().target_modules_size(), 2);
  EXPECT_EQ(job.spec().target_modules(0), "query_proj") << "PEFT's default for DeBERTa-v2";
  EXPECT_EQ(job.spec().target_modules(1), "value_proj");
  EXPECT_EQ(job.progress().step(), 8);
  // LoRA r=4 on query_proj and value_proj (64 -> 64) of 2 layers (the gate's τ is no parameter),
  // and the classifier 64 x 2 + 2 (the pooler is frozen).
  EXPECT_EQ(job.trainable_parameters(), 4 * 4 * (64 + 64) + 64 * 2 + 2);

  const fs::path adapter = dir / "adapter";
  const RunResult dl = Peftctl(server.address(), {"download", job.id(), "-o", adapter.string()});
  ASSERT_EQ(dl.exit_code, 0) << dl.Describe();
  const json config = json::parse(testing::ReadFile(adapter / "adapter_config.json"));
  EXPECT_EQ(config["task_type"], "SEQ_CLS");
  EXPECT_EQ(config["modules_to_save"], json::array({"classifier"})) << config.dump();
  EXPECT_EQ(config["target_modules"], json::array({"query_proj", "value_proj"})) << config.dump();
  auto file = safetensors::File::Open((adapter / "adapter_model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> lora;
  for (const std::string& name : file->names()) {
    if (absl::StrContains(name, ".lora_")) lora.insert(name);
  }
  EXPECT_EQ(lora.size(), 8u);
  EXPECT_TRUE(lora.count(
      "base_model.model.deberta.encoder.layer.1.attention.self.value_proj.lora_B.weight"));
  for (const char* head : {"weight", "bias"}) {
    EXPECT_TRUE(file->Get(absl::StrCat("base_model.model.classifier.", head)).ok()) << head;
  }
  EXPECT_FALSE(file->Get("base_model.model.pooler.dense.weight").ok());
  // `peftd-worker eval` loads the DeBERTa with the adapter and its head: the logits change.
  std::ofstream(dir / "ids.json") << "[[1, 40, 41, 42, 2], [1, 7, 8, 2]]";
  auto logits = [&](const std::vector<std::string>& extra, const std::string& out) {
    const RunResult r = RunCommand(Concat(
        {kWorker, "eval", "--model", (dir / "models" / "tiny-deberta").string(), "--inputs",
         (dir / "ids.json").string(), "--dump-logits", (dir / out).string(), "--threads", "1"},
        extra));
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    auto f = safetensors::File::Open((dir / out).string());
    EXPECT_TRUE(f.ok()) << f.status();
    std::vector<float> v;
    if (!f.ok()) return v;
    auto t = f->Get("logits");
    EXPECT_TRUE(t.ok());
    if (!t.ok()) return v;
    EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 2}));
    const float* p = reinterpret_cast<const float*>(t->data);
    return std::vector<float>(p, p + t->numel());
  };
  const std::vector<float> base = logits({}, "base.safetensors");
  const std::vector<float> adapted = logits({"--adapter", adapter.string()}, "adapted.safetensors");
  ASSERT_EQ(base.size(), 4u);
  ASSERT_EQ(adapted.size(), 4u);
  EXPECT_NE(base, adapted);

  std::ofstream(dir / "merged.json") << R"({"export_merged": true, "num_threads": 1})";
  const RunResult merged_job =
      Peftctl(server.address(),
              Concat(Concat(Concat({"submit", "-f", (dir / "merged.json").string()}, data), cls),
                     Words("--method lora --rank 4 --target-modules query_proj,key_proj,value_proj "
                           "--steps 4 --batch-size 4 --max-seq-len 32 --lr 1e-2 --watch")));
  ASSERT_EQ(merged_job.exit_code, 0)
      << merged_job.Describe() << testing::ReadFile(dir / "peftd.log");
  v1::ListJobsResponse all;
  ASSERT_TRUE(testing::ParseJson(Peftctl(server.address(), {"--json", "list"}).out, &all));
  std::string merged_id;
  for (const v1::Job& j : all.jobs()) {
    if (j.id() != job.id()) merged_id = j.id();
  }
  ASSERT_FALSE(merged_id.empty());
  const fs::path merged_adapter = dir / "merged-adapter", merged_model = dir / "merged-model";
  ASSERT_EQ(
      Peftctl(server.address(), {"download", merged_id, "-o", merged_adapter.string()}).exit_code,
      0);
  const RunResult dl_merged =
      Peftctl(server.address(), {"download", merged_id, "--merged", "-o", merged_model.string()});
  ASSERT_EQ(dl_merged.exit_code, 0) << dl_merged.Describe();
  const json merged_config = json::parse(testing::ReadFile(merged_model / "config.json"));
  EXPECT_EQ(merged_config["architectures"], json::array({"DebertaV2ForSequenceClassification"}));
  EXPECT_EQ(merged_config["id2label"]["1"], "positive") << merged_config.dump();
  EXPECT_TRUE(fs::exists(merged_model / "spm.model"));
  const std::vector<float> with_adapter =
      logits({"--adapter", merged_adapter.string()}, "merged-adapter.safetensors");
  const RunResult merged_eval = RunCommand(
      {kWorker, "eval", "--model", merged_model.string(), "--inputs", (dir / "ids.json").string(),
       "--dump-logits", (dir / "merged.safetensors").string(), "--threads", "1"});
  ASSERT_EQ(merged_eval.exit_code, 0) << merged_eval.Describe();
  auto merged_file = safetensors::File::Open((dir / "merged.safetensors").string());
  ASSERT_TRUE(merged_file.ok()) << merged_file.status();
  auto merged_t = merged_file->Get("logits");
  ASSERT_TRUE(merged_t.ok());
  ASSERT_EQ(merged_t->numel(), 4);
  ASSERT_EQ(with_adapter.size(), 4u);
  EXPECT_NE(with_adapter, base);
  const float* merged_logits = reinterpret_cast<const float*>(merged_t->data);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(merged_logits[i], with_adapter[i], 1e-4) << i;
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
