// Refusals as a user meets them through the real `peftctl`: a dataset with bad lines and job specs
// with bad fields are refused with errors that name the line or the field, and nothing is stored;
// a dataset the server accepts but the job cannot train on fails the job (blame: user) naming the
// line, without retries.
#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/peftd_process.h"
#include "tests/server/test_model.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::kExamples;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunResult;

v1::ListDatasetsResponse Datasets(const PeftdProcess& server) {
  const RunResult r = Peftctl(server.address(), {"--json", "datasets", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  v1::ListDatasetsResponse resp;
  EXPECT_TRUE(testing::ParseJson(r.out, &resp)) << r.Describe();
  return resp;
}

int JobCount(const PeftdProcess& server) {
  const RunResult r = Peftctl(server.address(), {"--json", "list", "--all"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  v1::ListJobsResponse resp;
  EXPECT_TRUE(testing::ParseJson(r.out, &resp)) << r.Describe();
  return resp.jobs_size();
}

TEST(E2e, BadDatasetLinesAndBadSpecFieldsAreNamedByPeftctlAndNothingIsStored) {
  const fs::path dir = testing::FreshTestDir("errors");
  fs::create_directories(dir / "models" / "tiny-llama");
  std::ofstream(dir / "models" / "tiny-llama" / "config.json") << testing::kTestModelConfigJson;
  PeftdProcess server((dir / "data").string(),
                      {"--model-root=" + (dir / "models").string(), "--local-workers=0"});
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const int datasets_before = Datasets(server).datasets_size();

  const fs::path bad = dir / "bad.jsonl";
  std::ofstream(bad) << "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                        "{not json\n"
                        "{\"prompt\": \"c\"}\n"
                        "{\"prompt\": \"d\", \"completion\": \"e\"}\n";
  const RunResult upload = Peftctl(server.address(), {"datasets", "upload", bad.string()});
  EXPECT_EQ(upload.exit_code, 4) << upload.Describe();
  EXPECT_TRUE(absl::StrContains(upload.err, "2 bad lines")) << upload.err;
  EXPECT_TRUE(absl::StrContains(upload.err, "line 2: invalid JSON")) << upload.err;
  EXPECT_TRUE(absl::StrContains(upload.err, "line 3: field \"completion\": missing")) << upload.err;
  EXPECT_TRUE(upload.out.empty()) << upload.out;
  // The same file through submit: refused before any job exists.
  const RunResult submit_bad =
      Peftctl(server.address(),
              {"submit", "--model", "tiny-llama", "--method", "lora", "--train", bad.string()});
  EXPECT_EQ(submit_bad.exit_code, 4) << submit_bad.Describe();
  EXPECT_TRUE(absl::StrContains(submit_bad.err, "line 3")) << submit_bad.err;
  const v1::ListDatasetsResponse after = Datasets(server);
  EXPECT_EQ(after.datasets_size(), datasets_before);
  for (const auto& d : after.datasets()) EXPECT_NE(d.filename(), "bad.jsonl") << d.id();

  const RunResult good =
      Peftctl(server.address(), {"--json", "datasets", "upload", kExamples + "/tiny-lm-val.jsonl"});
  ASSERT_EQ(good.exit_code, 0) << good.Describe();
  v1::Dataset ds;
  ASSERT_TRUE(testing::ParseJson(good.out, &ds)) << good.Describe();

  struct Case {
    std::vector<std::string> args;  // after `submit --train <ds>`
    std::string job_file;           // JSON fields added to a valid spec, "" for none
    int exit_code;
    std::string field;  // what the error names
  };
  const std::vector<Case> cases = {
      {{"--model", "no-such-model", "--method", "lora"}, "", 3, "base_model"},
      {{"--model", "tiny-llama", "--method", "lora", "--gate", "--export-merged"},
       "",
       4,
       "export_merged"},
      {{}, "\"lora\": {\"r\": -1}", 4, "lora.r"},
      {{}, "\"learning_rate\": -0.5", 4, "learning_rate"},
      {{}, "\"warmup_ratio\": 1.5", 4, "warmup_ratio"},
      {{}, "\"max_seq_len\": -3", 4, "max_seq_len"},
  };
  int n = 0;
  for (const Case& c : cases) {
    std::vector<std::string> args = {"submit", "--train", ds.id()};
    if (!c.job_file.empty()) {
      const fs::path file = dir / absl::StrCat("job", n++, ".json");
      std::ofstream(file) << "{\"base_model\": \"tiny-llama\", \"method\": \"LORA\", " << c.job_file
                          << "}";
      args.insert(args.end(), {"-f", file.string()});
    }
    args.insert(args.end(), c.args.begin(), c.args.end());
    const RunResult r = Peftctl(server.address(), args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.field << "\n" << r.Describe();
    EXPECT_TRUE(absl::StrContains(r.err, c.field)) << c.field << "\n" << r.Describe();
    EXPECT_TRUE(absl::StartsWith(r.err, "error: submitting the job: " + c.field)) << r.Describe();
  }
  EXPECT_EQ(JobCount(server), 0);
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

TEST(E2e, ARecordLongerThanMaxSeqLenWithoutTruncateFailsTheJobNamingTheLineOnce) {
  const fs::path dir = testing::FreshTestDir("too_long");
  PeftdProcess server((dir / "data").string(),
                      {"--model-root=" + (dir / "models").string(), "--local-workers=1",
                       "--heartbeat-interval=200ms", "--lease-timeout=5s"});
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const fs::path data = dir / "train.jsonl";
  {
    std::ofstream out(data);
    for (int i = 0; i < 6; ++i) out << "{\"text\": \"ab\"}\n";
    out << "{\"text\": \"this record is much longer than eight tokens of the tiny model\"}\n";
  }
  const fs::path job = dir / "job.json";
  std::ofstream(job)
      << "{\"base_model\": \"tiny-llama\", \"method\": \"LORA\", \"training_dataset_id\": \""
      << data.string()
      << "\", \"max_seq_len\": 8, \"truncate\": false, \"max_steps\": 2,"
         " \"batch_size\": 2, \"num_threads\": 1}";
  const RunResult r = Peftctl(server.address(), {"submit", "-f", job.string(), "--watch"});
  EXPECT_EQ(r.exit_code, 7) << r.Describe() << testing::ReadFile(dir / "peftd.log");
  const RunResult got = Peftctl(server.address(), {"--json", "list"});
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(testing::ParseJson(got.out, &jobs)) << got.Describe();
  ASSERT_EQ(jobs.jobs_size(), 1);
  const v1::Job& failed = jobs.jobs(0);
  EXPECT_EQ(failed.state(), v1::FAILED);
  EXPECT_EQ(failed.attempt(), 1) << "a user error is not retried";
  EXPECT_EQ(failed.error().blame(), v1::JobError::USER) << failed.error().DebugString();
  EXPECT_TRUE(absl::StrContains(failed.error().message(), "line 7")) << failed.error().message();
  EXPECT_TRUE(absl::StrContains(failed.error().message(), "max_seq_len"))
      << failed.error().message();
  EXPECT_EQ(failed.error().line(), 7) << failed.error().DebugString();
  EXPECT_TRUE(absl::StrContains(r.out, "line 7")) << r.Describe();
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
