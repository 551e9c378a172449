// T5 end to end with the real binaries (issue 14): `peftd-worker make-tiny-model --arch t5` writes
// a model under the server's model root, `peftctl models list` shows it as a SEQ_2_SEQ_LM-only
// T5ForConditionalGeneration, what T5 cannot do is refused at submit naming the field, a
// SEQ_2_SEQ_LM job on input/target records that names no target_modules gets PEFT's default (q,
// v), trains through peftd and a --local-workers child with its eval loss dropping, and the
// downloaded adapter is PEFT's T5 layout (task_type SEQ_2_SEQ_LM, keys under
// base_model.model.encoder.block.N.layer.0.SelfAttention.q ...).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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
using testing::kWorker;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunCommand;
using testing::RunResult;
using testing::Words;

// A copy task the tiny model learns fast: the target is the input's digits.
void WriteCopyRecords(const fs::path& path, int count, int offset) {
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) {
    const int a = (offset + i * 7) % 90 + 10, b = (offset + i * 13) % 90 + 10;
    out << json{{"input", absl::StrCat("copy: ", a, " ", b)}, {"target", absl::StrCat(a, " ", b)}}
               .dump()
        << "\n";
  }
}

TEST(E2eT5, TinyT5TrainsSeq2SeqThroughPeftdAndItsAdapterIsPeftsT5Layout) {
  const fs::path dir = testing::FreshTestDir("t5");
  const RunResult made = RunCommand(
      {kWorker, "make-tiny-model", (dir / "models" / "tiny-t5").string(), "--arch", "t5"});
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  WriteCopyRecords(dir / "train.jsonl", 64, 0);
  WriteCopyRecords(dir / "val.jsonl", 16, 500);
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
    if (absl::StartsWith(line, "tiny-t5 ")) row = std::string(line);
  }
  EXPECT_TRUE(absl::StrContains(row, "T5ForConditionalGeneration")) << models.out;
  EXPECT_TRUE(absl::StrContains(row, "SEQ_2_SEQ_LM")) << models.out;
  EXPECT_FALSE(absl::StrContains(row, "CAUSAL_LM")) << models.out;

  const std::vector<std::string> data = {"--train", (dir / "train.jsonl").string(), "--val",
                                         (dir / "val.jsonl").string()};
  // T5 is SEQ_2_SEQ_LM only; its records need that task; it does not pack.
  const RunResult causal =
      Peftctl(server.address(),
              Concat(Concat({"submit"}, data), Words("--model tiny-t5 --method lora --steps 2")));
  EXPECT_NE(causal.exit_code, 0) << causal.Describe();
  EXPECT_TRUE(absl::StrContains(causal.err, "SEQ_2_SEQ_LM")) << causal.Describe();
  std::ofstream(dir / "packed.json") << R"({"packing": true})";
  const RunResult packed = Peftctl(
      server.address(), Concat(Concat({"submit", "-f", (dir / "packed.json").string()}, data),
                               Words("--model tiny-t5 --method lora --task seq_2_seq_lm "
                                     "--steps 2")));
  EXPECT_NE(packed.exit_code, 0) << packed.Describe();
  EXPECT_TRUE(absl::StrContains(packed.err, "packing")) << packed.Describe();

  std::ofstream(dir / "job.json") << R"({"num_threads": 1, "max_target_len": 16})";
  const RunResult watched =
      Peftctl(server.address(),
              Concat(Concat({"submit", "-f", (dir / "job.json").string()}, data),
                     Words("--model tiny-t5 --method lora --task seq_2_seq_lm --rank 8 --steps 16 "
                           "--batch-size 8 --max-seq-len 32 --lr 1e-2 --eval-interval 4 --watch")));
  ASSERT_EQ(watched.exit_code, 0) << watched.Describe() << testing::ReadFile(dir / "peftd.log");

  const RunResult list = Peftctl(server.address(), {"--json", "list"});
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(testing::ParseJson(list.out, &jobs)) << list.Describe();
  ASSERT_EQ(jobs.jobs_size(), 1);
  const v1::Job& job = jobs.jobs(0);
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.DebugString();
  ASSERT_EQ(job.spec().target_modules_size(), 2);
  EXPECT_EQ(job.spec().target_modules(0), "q") << "PEFT's default for T5";
  EXPECT_EQ(job.spec().target_modules(1), "v");
  EXPECT_EQ(job.spec().max_target_len(), 16);
  EXPECT_EQ(job.progress().step(), 16);
  // q and v (64 -> 32) of 2 encoder and 3 decoder self-attentions and 3 cross-attentions, r = 8.
  EXPECT_EQ(job.trainable_parameters(), 2 * 8 * 8 * (64 + 32));

  // The eval loss drops from the first evaluation to the last.
  const RunResult events = Peftctl(server.address(), {"--json", "events", job.id()});
  v1::ListJobEventsResponse log;
  ASSERT_TRUE(testing::ParseJson(events.out, &log)) << events.Describe();
  std::vector<double> evals;
  int64_t last_step = -1;
  for (const auto& e : log.events()) {
    if (e.progress().has_eval() && e.progress().step() != last_step &&
        (evals.empty() || e.progress().eval_loss() != evals.back())) {
      evals.push_back(e.progress().eval_loss());
      last_step = e.progress().step();
    }
  }
  ASSERT_GE(evals.size(), 2u) << events.out;
  EXPECT_LT(evals.back(), evals.front()) << events.out;
  EXPECT_LT(job.progress().eval_loss(), evals.front());

  const fs::path adapter = dir / "adapter";
  const RunResult dl = Peftctl(server.address(), {"download", job.id(), "-o", adapter.string()});
  ASSERT_EQ(dl.exit_code, 0) << dl.Describe();
  const json config = json::parse(testing::ReadFile(adapter / "adapter_config.json"));
  EXPECT_EQ(config["task_type"], "SEQ_2_SEQ_LM") << config.dump();
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["fan_in_fan_out"], false);
  EXPECT_EQ(config["target_modules"], json::array({"q", "v"})) << config.dump();
  auto file = safetensors::File::Open((adapter / "adapter_model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> expected;
  auto add = [&](const std::string& module) {
    for (const char* p : {"q", "v"}) {
      for (const char* w : {".lora_A.weight", ".lora_B.weight"}) {
        expected.insert(absl::StrCat("base_model.model.", module, ".", p, w));
      }
    }
  };
  for (int i = 0; i < 2; ++i) add(absl::StrCat("encoder.block.", i, ".layer.0.SelfAttention"));
  for (int i = 0; i < 3; ++i) {
    add(absl::StrCat("decoder.block.", i, ".layer.0.SelfAttention"));
    add(absl::StrCat("decoder.block.", i, ".layer.1.EncDecAttention"));
  }
  const std::vector<std::string> names = file->names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected);
  auto a = file->Get("base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->shape, (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
