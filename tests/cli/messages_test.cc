// What peftctl says when something is off, as a newcomer met it (issue 18): unknown commands named,
// flag values checked before any call, the server's advice for other clients left out, repeats
// and no-ops said as such, and a probe that always prints its verdict.
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "fake_job_service.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

using testing::FakeServer;
using testing::RunCli;
using testing::RunResult;

class MessagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("PEFTD_TOKEN");
    unsetenv("PEFTD_SERVER");
    dir_ = testing::TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  RunResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", server_.address()});
    return RunCli(std::move(args));
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  FakeServer server_;
  std::filesystem::path dir_;
};

TEST_F(MessagesTest, UnknownCommandIsNamed) {
  RunResult r = Run({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown command 'frobnicate'")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "submit, list")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "A subcommand is required")) << r.err;
  r = Run({"--json", "datasets", "frob"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "unknown command 'frob' of peftctl datasets")) << r.err;
}

TEST_F(MessagesTest, LabelErrorNamesTheFlagOnce) {
  RunResult r = Run({"submit", "--label", "bad"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "'bad' is not key=value")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "--label: --label:")) << r.err;
}

TEST_F(MessagesTest, MalformedServerIsAUsageErrorNotUnreachable) {
  RunResult r = RunCli({"--server", "nonsense", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--server: 'nonsense' is not HOST:PORT")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "cannot reach")) << r.err;
  EXPECT_EQ(RunCli({"--server", "localhost:99999", "list"}).code, 2);
  // A well-formed address that nobody serves is still "unreachable".
  EXPECT_EQ(RunCli({"--server", "127.0.0.1:1", "list"}).code, 6);
}

// peftd's refusal tells every kind of client how to pass a token (worker flags, raw gRPC
// metadata); peftctl keeps the reason and gives its own advice.
TEST_F(MessagesTest, AuthRefusalKeepsOnlyWhatAUserNeeds) {
  server_.service.forced = grpc::Status(
      grpc::StatusCode::UNAUTHENTICATED,
      "this server requires a bearer token and the call carried none: pass the server's token "
      "with `peftctl --token TOKEN` (or PEFTD_TOKEN=TOKEN); workers take `peftd-worker "
      "--token-file FILE`; over gRPC send metadata `authorization: Bearer TOKEN`");
  RunResult r = Run({"list"});
  EXPECT_EQ(r.code, 5);
  EXPECT_TRUE(absl::StrContains(r.err, "requires a bearer token and the call carried none"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "pass it with --token")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "peftd-worker")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "metadata")) << r.err;
}

TEST_F(MessagesTest, CancellingACancelledJobSaysItHadEnded) {
  {
    std::lock_guard<std::mutex> lock(server_.service.mu);
    server_.service.jobs["j-1"].set_state(v1::QUEUED);
  }
  RunResult r = Run({"cancel", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job j-1 cancelled\n");
  r = Run({"cancel", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job j-1 had already ended: cancelled\n");
}

TEST_F(MessagesTest, RepeatedRequestIdSaysItReturnedTheExistingJob) {
  const std::vector<std::string> submit = {
      "submit", "--model", "m", "--method", "lora", "--train", "ds-1", "--request-id", "r-same"};
  RunResult r = Run(submit);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "submitted job j-2")) << r.out;
  r = Run(submit);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out,
                               "request id r-same was used before: returned the existing "
                               "job j-2 (queued), no new job"))
      << r.out;
}

TEST_F(MessagesTest, HealthJsonAgainstADeadServerStillPrintsJson) {
  RunResult r = RunCli({"--server", "127.0.0.1:1", "health", "--json"});
  EXPECT_EQ(r.code, 6);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "stdout: " << r.out;
  EXPECT_EQ(j["status"], "UNREACHABLE");
  EXPECT_EQ(j["server"], "127.0.0.1:1");
  EXPECT_TRUE(absl::StrContains(r.err, "cannot reach peftd")) << r.err;
}

TEST_F(MessagesTest, ZeroFlagsAndAdaloraRankAndLabelNamesOnTheCommandLine) {
  RunResult r = Run({"submit", "--model", "m", "--method", "lora", "--train", "ds-1", "--lr", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--lr: must be > 0")) << r.err;
  r = Run({"submit", "--model", "m", "--method", "lora", "--train", "ds-1", "--gate-s", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(server_.service.creates.empty());
  r = Run({"submit", "--model", "m", "--method", "adalora", "--rank", "16", "--train", "ds-1",
           "--task", "seq_cls", "--num-labels", "2", "--label-names", "neg,pos"});
  ASSERT_EQ(r.code, 0) << r.err;
  const v1::JobSpec& spec = server_.service.creates.back().spec();
  EXPECT_EQ(spec.adalora().init_r(), 16);
  EXPECT_EQ(spec.adalora().target_r(), 16);
  ASSERT_EQ(spec.label_names_size(), 2);
  EXPECT_EQ(spec.label_names(1), "pos");
}

TEST_F(MessagesTest, ValidateRefusesLabelNamesThatDisagreeWithNumLabels) {
  const std::string f = Write("cls.jsonl", "{\"text\": \"good\", \"label\": \"pos\"}\n");
  RunResult r =
      RunCli({"datasets", "validate", f, "--num-labels", "3", "--label-names", "neg,pos"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--label-names: 2 names for --num-labels 3")) << r.err;
  EXPECT_EQ(
      RunCli({"datasets", "validate", f, "--num-labels", "2", "--label-names", "neg,pos"}).code, 0);
}

// skip_bad_lines end to end on the client: submit --skip-bad-lines uploads with allow_bad_lines
// and sends the spec field; a plain upload refused for bad lines says how to keep them.
TEST_F(MessagesTest, SkipBadLinesUploadsWithAllowBadLines) {
  const std::string train = Write("train.jsonl", "{\"text\": \"ok\"}\nBAD\n");
  RunResult r = Run({"datasets", "upload", train});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.err, "--allow-bad-lines")) << r.err;
  r = Run({"submit", "--model", "m", "--method", "lora", "--train", train, "--skip-bad-lines"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "1 bad line for jobs with skip_bad_lines")) << r.out;
  EXPECT_TRUE(server_.service.creates.back().spec().skip_bad_lines());
  ASSERT_FALSE(server_.service.uploaded_allow_bad_lines.empty());
  EXPECT_TRUE(server_.service.uploaded_allow_bad_lines.back());
}

}  // namespace
}  // namespace peftd::cli
