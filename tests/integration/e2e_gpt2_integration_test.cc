// GPT-2 end to end with the real binaries: `peftd-worker make-tiny-model --arch gpt2` writes a
// model under the server's model root, `peftctl models list` shows it as a CAUSAL_LM-only
// GPT2LMHeadModel, a job that names no target_modules is admitted with PEFT's GPT-2 default
// (c_attn), trains with packing through peftd and a --local-workers child, and the downloaded
// adapter is PEFT's GPT-2 layout: fan_in_fan_out true, lora_A (r, in) and lora_B (out, r) under
// base_model.model.transformer.h.N.attn.c_attn, which `peftd-worker eval` loads. What GPT-2
// cannot do is refused at submit.
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

TEST(E2eGpt2, TinyGpt2TrainsThroughPeftdAndItsAdapterIsPeftsGpt2Layout) {
  const fs::path dir = testing::FreshTestDir("gpt2");
  const RunResult made = RunCommand(
      {kWorker, "make-tiny-model", (dir / "models" / "tiny-gpt2").string(), "--arch", "gpt2"});
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  PeftdProcess server((dir / "data").string(),
                      {"--model-root=" + (dir / "models").string(), "--local-workers=1",
                       "--heartbeat-interval=500ms", "--lease-timeout=5s"});
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;

  const RunResult models = Peftctl(server.address(), {"models", "list"});
  ASSERT_EQ(models.exit_code, 0) << models.Describe();
  // The row of tiny-gpt2 (the server also writes its built-in tiny-llama there).
  std::string row;
  for (absl::string_view line : absl::StrSplit(models.out, '\n')) {
    if (absl::StartsWith(line, "tiny-gpt2 ")) row = std::string(line);
  }
  EXPECT_TRUE(absl::StrContains(row, "GPT2LMHeadModel")) << models.out;
  EXPECT_TRUE(absl::StrContains(row, " CAUSAL_LM ")) << models.out;
  EXPECT_FALSE(absl::StrContains(row, "SEQ_CLS")) << models.out;

  const std::vector<std::string> data = {"--train", kExamples + "/tiny-lm-train.jsonl"};
  // GPT-2 is a causal LM only, and no merged GPT-2 is written: both refused before anything runs.
  const RunResult cls = Peftctl(
      server.address(),
      Concat(Concat({"submit"}, data), Words("--model tiny-gpt2 --method lora --task seq_cls "
                                             "--num-labels 2 --steps 2")));
  EXPECT_NE(cls.exit_code, 0) << cls.Describe();
  EXPECT_TRUE(absl::StrContains(cls.err, "use task CAUSAL_LM")) << cls.Describe();

  std::ofstream(dir / "job.json") << R"({"num_threads": 1, "packing": true})";
  const RunResult watched =
      Peftctl(server.address(),
              Concat(Concat({"submit", "-f", (dir / "job.json").string()}, data),
                     Words("--model tiny-gpt2 --method lora --rank 4 --steps 8 --batch-size 4 "
                           "--max-seq-len 48 --lr 3e-3 --watch")));
  ASSERT_EQ(watched.exit_code, 0) << watched.Describe() << testing::ReadFile(dir / "peftd.log");

  const RunResult list = Peftctl(server.address(), {"--json", "list"});
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(testing::ParseJson(list.out, &jobs)) << list.Describe();
  ASSERT_EQ(jobs.jobs_size(), 1);
  const v1::Job& job = jobs.jobs(0);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.spec().target_modules_size(), 1);
  EXPECT_EQ(job.spec().target_modules(0), "c_attn") << "PEFT's default for GPT-2";
  EXPECT_EQ(job.progress().step(), 8);
  // 2 blocks x LoRA r=4 on c_attn (64 -> 192): 2 * 4 * (64 + 192).
  EXPECT_EQ(job.trainable_parameters(), 2048);

  const fs::path adapter = dir / "adapter";
  const RunResult dl = Peftctl(server.address(), {"download", job.id(), "-o", adapter.string()});
  ASSERT_EQ(dl.exit_code, 0) << dl.Describe();
  const json config = json::parse(testing::ReadFile(adapter / "adapter_config.json"));
  EXPECT_EQ(config["fan_in_fan_out"], true) << config.dump();
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  EXPECT_EQ(config["target_modules"], json::array({"c_attn"})) << config.dump();
  auto file = safetensors::File::Open((adapter / "adapter_model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> expected;
  for (int layer = 0; layer < 2; ++layer) {
    const std::string prefix =
        absl::StrCat("base_model.model.transformer.h.", layer, ".attn.c_attn.");
    expected.insert(prefix + "lora_A.weight");
    expected.insert(prefix + "lora_B.weight");
    auto a = file->Get(prefix + "lora_A.weight");
    auto b = file->Get(prefix + "lora_B.weight");
    ASSERT_TRUE(a.ok() && b.ok()) << prefix;
    EXPECT_EQ(a->shape, (std::vector<int64_t>{4, 64})) << prefix;
    EXPECT_EQ(b->shape, (std::vector<int64_t>{192, 4})) << prefix;
    const float* bv = reinterpret_cast<const float*>(b->data);
    bool moved = false;
    for (int64_t i = 0; i < b->numel(); ++i) moved = moved || bv[i] != 0.0f;
    EXPECT_TRUE(moved) << prefix << "lora_B is still zero";
  }
  const std::vector<std::string> names = file->names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected);
  // `peftd-worker eval` loads the GPT-2 with the downloaded adapter: the loss changes.
  std::ofstream(dir / "ids.json") << "[[40, 41, 42, 43, 44, 45, 46, 47], [7, 8, 9, 10, 11]]";
  auto eval_loss = [&](const std::vector<std::string>& extra) {
    const RunResult r =
        RunCommand(Concat({kWorker, "eval", "--model", (dir / "models" / "tiny-gpt2").string(),
                           "--inputs", (dir / "ids.json").string(), "--loss", "--threads", "1"},
                          extra));
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    const size_t at = r.out.find("loss");
    EXPECT_NE(at, std::string::npos) << r.Describe();
    if (at == std::string::npos) return -1.0;
    return std::strtod(r.out.c_str() + r.out.find_first_of("0123456789", at), nullptr);
  };
  const double base = eval_loss({});
  const double adapted = eval_loss({"--adapter", adapter.string()});
  EXPECT_GT(base, 0);
  EXPECT_GT(adapted, 0);
  EXPECT_NE(base, adapted);
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
