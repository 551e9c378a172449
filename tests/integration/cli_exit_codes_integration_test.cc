// Every row of docs/cli.md's exit-code table, run with the real `peftctl` against a real `peftd`
// (a scripted worker plays the one that fails a job). The table is read from the doc, so a row
// added there without a case here fails the test. Also, through the same binaries: module
// patterns refused at submit naming the modules that exist, a dataset with bad lines kept only
// for jobs with skip_bad_lines, and the words of auth refusals, repeats and downloads.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/fake_worker.h"
#include "tests/integration/peftd_process.h"
#include "tests/server/test_model.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::kExamples;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunResult;

// The codes of the "Exit codes" table of docs/cli.md.
std::set<int> DocumentedCodes() {
  const std::string doc = testing::ReadFile(PEFTD_SOURCE_DIR "/docs/cli.md");
  const size_t start = doc.find("## Exit codes");
  const size_t end = doc.find("\n## ", start + 1);
  const std::string section = doc.substr(start, end - start);
  std::set<int> codes;
  const std::regex row(R"(\n\| (\d+) \|)");
  for (std::sregex_iterator it(section.begin(), section.end(), row), last; it != last; ++it) {
    codes.insert(std::stoi((*it)[1]));
  }
  return codes;
}

std::string JobId(const RunResult& r) {
  v1::Job job;
  EXPECT_TRUE(testing::ParseJson(r.out, &job)) << r.Describe();
  return job.id();
}

class CliExitCodes : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("cli_exit_codes");
    fs::create_directories(dir_ / "models" / "tiny-llama");
    std::ofstream(dir_ / "models" / "tiny-llama" / "config.json") << testing::kTestModelConfigJson;
    server_ = std::make_unique<PeftdProcess>(
        (dir_ / "data").string(),
        std::vector<std::string>{"--model-root=" + (dir_ / "models").string(),
                                 "--heartbeat-interval=200ms", "--lease-timeout=5s"});
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    const RunResult ds = Peftctl(
        server_->address(), {"--json", "datasets", "upload", kExamples + "/tiny-lm-val.jsonl"});
    ASSERT_EQ(ds.exit_code, 0) << ds.Describe();
    v1::Dataset dataset;
    ASSERT_TRUE(testing::ParseJson(ds.out, &dataset)) << ds.Describe();
    train_ = dataset.id();
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  // A queued job (no worker takes it unless the test plays one).
  std::string Submit(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--json",   "submit", "--model", "tiny-llama",
                                     "--method", "lora",   "--train", train_};
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult r = Peftctl(server_->address(), args);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    return JobId(r);
  }

  fs::path dir_;
  std::unique_ptr<PeftdProcess> server_;
  std::string train_;
};

TEST_F(CliExitCodes, EveryRowOfTheDocumentedTable) {
  const std::string addr = server_->address();
  struct Case {
    int code;
    std::vector<std::string> args;
    std::string says;         // in stderr (or stdout for 0, 7, 8)
    std::string server = "";  // "" = the test server
  };
  // 7: a worker leases the oldest job and fails it; 8: the next one is cancelled; the last
  // stays queued (nothing to download yet).
  const std::string failed = Submit();
  const std::string cancelled = Submit();
  ASSERT_EQ(Peftctl(addr, {"cancel", cancelled}).exit_code, 0);
  const std::string still_queued = Submit();
  testing::FakeWorker worker(server_->Channel(), "w-exit");
  ASSERT_TRUE(worker.Register().ok());
  v1::HeartbeatResponse hb;
  ASSERT_TRUE(worker.Heartbeat(1, {}, &hb).ok());
  ASSERT_EQ(hb.leases_size(), 1);
  ASSERT_EQ(hb.leases(0).job_id(), failed);  // oldest first
  {
    v1::Lease lease = hb.leases(0);
    v1::CompleteJobRequest req;
    grpc::ClientContext ctx;
    auto stub = v1::WorkerService::NewStub(server_->Channel());
    req.set_worker_id("w-exit");
    req.set_job_id(lease.job_id());
    req.set_attempt(lease.attempt());
    req.set_final_state(v1::FAILED);
    req.mutable_error()->set_message("the scripted worker fails it");
    req.mutable_error()->set_blame(v1::JobError::USER);
    v1::CompleteJobResponse resp;
    ASSERT_TRUE(stub->CompleteJob(&ctx, req, &resp).ok());
  }

  const std::string bad = Write("bad.jsonl", "{\"text\": \"ok\"}\n{not json\n");
  const std::string missing = (dir_ / "missing.jsonl").string();
  const std::vector<Case> cases = {
      {0, {"health"}, "SERVING"},
      {0, {"list"}, ""},
      {1, {"download", still_queued, "-o", (dir_ / "a").string()}, "once the job SUCCEEDED"},
      {1, {"download", cancelled, "-o", (dir_ / "b").string()}, "ended without an adapter"},
      {2, {"frobnicate"}, "unknown command 'frobnicate'"},
      {2, {"get"}, "ID is required"},
      {2, {"list", "--bogus"}, "--bogus"},
      {2, {"list", "--label", "team"}, "'team' is not key=value"},
      {2, {"list", "--state", "bogus"}, "unknown state 'bogus'"},
      {2,
       {"submit", "--model", "tiny-llama", "--method", "lora", "--train", train_, "--lr", "0"},
       "--lr: must be > 0"},
      {2, {"submit", "--method", "lora", "--train", train_}, "give --model"},
      {2,
       {"datasets", "validate", missing, "--num-labels", "3", "--label-names", "a,b"},
       "--label-names"},
      {2, {"list"}, "is not HOST:PORT", "nonsense"},
      {3, {"get", "job-0000000000000000"}, "no job"},
      {3, {"watch", "job-0000000000000000"}, "no job"},
      {3, {"datasets", "upload", missing}, "missing.jsonl"},
      {3, {"datasets", "validate", missing}, "missing.jsonl"},
      {3, {"submit", "-f", (dir_ / "missing.yaml").string()}, "missing.yaml"},
      {3,
       {"submit", "--model", "tiny-llama", "--method", "lora", "--train", missing},
       "missing.jsonl"},
      {3,
       {"submit", "--model", "no-such-model", "--method", "lora", "--train", train_},
       "base_model"},
      {3, {"--token-file", (dir_ / "no-token").string(), "list"}, "--token-file"},
      {4, {"datasets", "upload", bad}, "line 2"},
      {4,
       {"submit", "--model", "tiny-llama", "--method", "lora", "--train", train_, "--rank", "-1"},
       "lora.r"},
      {4,
       {"submit", "-f", Write("job.yaml", "base_model: tiny-llama\nmethod: lora\nlora:\n  r: x\n")},
       "job.yaml:4"},
      {6, {"list"}, "cannot reach peftd", "127.0.0.1:1"},
      {6, {"health", "--service", "no.such.Service"}, "SERVICE_UNKNOWN"},
      {6, {"health"}, "cannot reach peftd", "127.0.0.1:1"},
      {7, {"watch", failed}, "failed"},
      {8, {"watch", cancelled}, "cancelled"},
  };
  std::set<int> covered;
  for (const Case& c : cases) {
    const RunResult r = Peftctl(c.server.empty() ? addr : c.server, c.args);
    EXPECT_EQ(r.exit_code, c.code) << absl::StrJoin(c.args, " ") << "\n" << r.Describe();
    EXPECT_TRUE(absl::StrContains(r.err + r.out, c.says))
        << absl::StrJoin(c.args, " ") << " should say: " << c.says << "\n"
        << r.Describe();
    covered.insert(c.code);
  }

  // 5: a server with a token, called without one and with a wrong one.
  PeftdProcess locked((dir_ / "locked").string(),
                      {"--model-root=" + (dir_ / "models").string(), "--auth-token=s3cret"});
  std::string error;
  ASSERT_TRUE(locked.Start(&error)) << error;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"--token", "wrong", "list"}}) {
    const RunResult r = Peftctl(locked.address(), args);
    EXPECT_EQ(r.exit_code, 5) << r.Describe();
    // The user's advice, not the worker's flags or raw gRPC metadata.
    EXPECT_TRUE(absl::StrContains(r.err, "--token")) << r.Describe();
    EXPECT_FALSE(absl::StrContains(r.err, "peftd-worker")) << r.Describe();
    EXPECT_FALSE(absl::StrContains(r.err, "metadata")) << r.Describe();
  }
  EXPECT_EQ(Peftctl(locked.address(), {"--token", "s3cret", "list"}).exit_code, 0);
  covered.insert(5);

  for (int code : DocumentedCodes()) {
    EXPECT_TRUE(covered.count(code))
        << "cli.md documents exit code " << code << " but no case here runs it";
  }
  EXPECT_EQ(DocumentedCodes(), covered);
}

// A server shutting down cancels the open WatchJob streams: `watch` keeps trying for
// --reconnect-timeout and then exits 6 (before: sometimes 1 with CANCELLED at once).
TEST_F(CliExitCodes, WatchThroughAServerShutdownExits6) {
  const std::string job = Submit();
  const std::string out = (dir_ / "watch.out").string(), err = (dir_ / "watch.err").string();
  const pid_t pid = testing::Spawn(
      {testing::kPeftctl, "--server", server_->address(), "watch", job, "--reconnect-timeout", "2"},
      {{"PEFTD_TOKEN", "\x01"}, {"PEFTD_SERVER", "\x01"}}, out, err);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));  // the stream is open
  EXPECT_EQ(server_->Terminate(), 0);
  int status = 0;
  for (int i = 0; i < 3000 && waitpid(pid, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(WIFEXITED(status)) << testing::ReadFile(err);
  EXPECT_EQ(WEXITSTATUS(status), 6) << testing::ReadFile(err);
  EXPECT_TRUE(absl::StrContains(testing::ReadFile(err), "--reconnect-timeout"))
      << testing::ReadFile(err);
}

// docs/job-spec.md "Module patterns": every entry must match a Linear module of the model, names
// and `re:` entries mix, and a refusal lists the names that exist.
TEST_F(CliExitCodes, ModulePatternsThroughPeftctl) {
  const std::vector<std::string> base = {"submit", "--model", "tiny-llama", "--method",
                                         "lora",   "--train", train_};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return Peftctl(server_->address(), args);
  };
  RunResult r = with({"--target-modules", "q_proj,foo_proj"});
  EXPECT_EQ(r.exit_code, 4) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "foo_proj")) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "v_proj")) << r.Describe();  // a name that exists
  r = with({"--target-modules", "q_proj", "--target-modules", "re:.*\\.v_proj"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  r = with({"--target-modules", "q_proj", "--target-modules", "re:.*\\.nothing_proj"});
  EXPECT_EQ(r.exit_code, 4) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "nothing_proj")) << r.Describe();
}

// skip_bad_lines: a file with bad lines is stored only on request and counted; a job without
// skip_bad_lines is refused at submit naming the field and the count; with it, it is queued.
TEST_F(CliExitCodes, SkipBadLinesKeepsTheDatasetForJobsThatOptIn) {
  const std::string addr = server_->address();
  const std::string bad = Write("some-bad.jsonl",
                                "{\"text\": \"one\"}\n{not json\n{\"text\": \"two\"}\n"
                                "{\"text\": \"\"}\n{\"text\": \"three\"}\n");
  RunResult r = Peftctl(addr, {"datasets", "upload", bad});
  EXPECT_EQ(r.exit_code, 4) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "--allow-bad-lines")) << r.Describe();
  r = Peftctl(addr, {"--json", "datasets", "upload", bad, "--allow-bad-lines"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  v1::Dataset ds;
  ASSERT_TRUE(testing::ParseJson(r.out, &ds)) << r.Describe();
  EXPECT_EQ(ds.bad_lines(), 2);
  r = Peftctl(addr, {"submit", "--model", "tiny-llama", "--method", "lora", "--train", ds.id()});
  EXPECT_EQ(r.exit_code, 4) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "skip_bad_lines")) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "2 bad lines")) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "some-bad.jsonl")) << r.Describe();
  r = Peftctl(addr, {"submit", "--model", "tiny-llama", "--method", "lora", "--train", ds.id(),
                     "--skip-bad-lines"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  // submit with the file itself uploads it for the job that skips.
  r = Peftctl(addr, {"submit", "--model", "tiny-llama", "--method", "lora", "--train", bad,
                     "--skip-bad-lines"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.out, "2 bad lines for jobs with skip_bad_lines")) << r.Describe();
}

TEST_F(CliExitCodes, RepeatedRequestIdAndCancelTwiceSayWhatHappened) {
  const std::vector<std::string> submit = {"submit",  "--model", "tiny-llama",   "--method", "lora",
                                           "--train", train_,    "--request-id", "r-again"};
  RunResult r = Peftctl(server_->address(), submit);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(absl::StartsWith(r.out, "submitted job ")) << r.Describe();
  r = Peftctl(server_->address(), submit);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.out, "was used before: returned the existing job"))
      << r.Describe();
  const std::string id = Submit();
  r = Peftctl(server_->address(), {"cancel", id});
  EXPECT_EQ(r.out, "job " + id + " cancelled\n") << r.Describe();
  r = Peftctl(server_->address(), {"cancel", id});
  EXPECT_EQ(r.out, "job " + id + " had already ended: cancelled\n") << r.Describe();
}

}  // namespace
}  // namespace peftd
