// Every peftctl command end to end against the in-process fake JobService: what it sends, what
// it prints (human and --json), and its exit code.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "fake_job_service.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

using json = nlohmann::json;
using testing::FakeServer;
using testing::RunCli;
using testing::RunResult;

class CommandsTest : public ::testing::Test {
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
  void AddJob(const std::string& id, v1::JobState state,
              std::map<std::string, std::string> labels = {}) {
    std::lock_guard<std::mutex> lock(server_.service.mu);
    v1::Job job;
    job.set_id(id);
    job.set_state(state);
    job.mutable_spec()->set_method(v1::HUT);
    job.mutable_spec()->mutable_token_gate()->set_enabled(true);
    for (auto& [k, v] : labels) (*job.mutable_labels())[k] = v;
    server_.service.jobs[id] = job;
  }
  static json ParseJson(const RunResult& r) {
    json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "stdout is not JSON:\n" << r.out;
    return j;
  }

  FakeServer server_;
  std::filesystem::path dir_;
};

TEST_F(CommandsTest, SubmitUploadsLocalDataAndSendsTheSpec) {
  std::string train = Write("train.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
  RunResult r = Run({"submit", "--model", "tiny-llama", "--method", "lora", "--gate", "--train",
                     train, "--val", "ds-00000000000000ff", "--steps", "20", "--rank", "4",
                     "--label", "team=nlp", "--name", "demo"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto& svc = server_.service;
  ASSERT_EQ(svc.creates.size(), 1u);
  const v1::CreateJobRequest& req = svc.creates[0];
  EXPECT_EQ(req.spec().base_model(), "tiny-llama");
  EXPECT_EQ(req.spec().method(), v1::LORA);
  EXPECT_TRUE(req.spec().token_gate().enabled());
  EXPECT_EQ(req.spec().lora().r(), 4);
  EXPECT_EQ(req.spec().max_steps(), 20);
  EXPECT_EQ(req.spec().training_dataset_id(),
            "ds-" + Sha256Hex(svc.uploaded_bytes[0]).substr(0, 16));
  EXPECT_EQ(req.spec().validation_dataset_id(), "ds-00000000000000ff");
  EXPECT_EQ(req.labels().at("team"), "nlp");
  EXPECT_EQ(req.display_name(), "demo");
  // The upload: name, bytes and their sha256 in the header.
  ASSERT_EQ(svc.uploaded_names.size(), 1u);
  EXPECT_EQ(svc.uploaded_names[0], "train.jsonl");
  EXPECT_EQ(svc.uploaded_sha256[0], Sha256Hex("{\"text\": \"a\"}\n{\"text\": \"b\"}\n"));
  // A random request id was chosen and is printed so the user can retry safely.
  EXPECT_TRUE(absl::StartsWith(req.request_id(), "r-"));
  EXPECT_TRUE(absl::StrContains(r.out, req.request_id())) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "submitted job j-2")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "uploaded train.jsonl -> ds-")) << r.out;
}

TEST_F(CommandsTest, SubmitFromYamlWithFlagOverridesAndDataNextToTheFile) {
  Write("data.jsonl", "{\"text\": \"hello\"}\n");
  std::string file = Write("job.yaml",
                           "base_model: tiny-llama\n"
                           "method: adalora\n"
                           "adalora: {init_r: 12, target_r: 8}\n"
                           "training_dataset_id: data.jsonl\n"
                           "max_steps: 100\n");
  RunResult r = Run({"submit", "-f", file, "--steps", "7", "--request-id", "r-fixed", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(server_.service.creates.size(), 1u);
  const auto& spec = server_.service.creates[0].spec();
  EXPECT_EQ(spec.method(), v1::ADALORA);
  EXPECT_EQ(spec.adalora().init_r(), 12);
  EXPECT_EQ(spec.max_steps(), 7);
  EXPECT_TRUE(absl::StartsWith(spec.training_dataset_id(), "ds-"));
  json j = ParseJson(r);
  EXPECT_EQ(j["request_id"], "r-fixed");
  EXPECT_EQ(j["state"], "QUEUED");
  EXPECT_EQ(j["spec"]["max_steps"], "7");  // int64 is a string in protobuf JSON
  // Same request id again: the same job comes back, not a second one.
  RunResult again =
      Run({"submit", "-f", file, "--steps", "7", "--request-id", "r-fixed", "--json"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(ParseJson(again)["id"], j["id"]);
}

TEST_F(CommandsTest, SubmitJobFileErrorsNameTheLineAndSendNothing) {
  std::string file = Write("bad.yaml", "base_model: tiny\nmethod: lora\nlora:\n  r: eight\n");
  RunResult r = Run({"submit", "-f", file});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.err, "bad.yaml:4: lora.r: expected an integer, got 'eight'"))
      << r.err;
  EXPECT_TRUE(server_.service.creates.empty());
}

TEST_F(CommandsTest, SubmitWithoutRequiredFieldsSaysWhichFlag) {
  // A missing required flag is a usage error (2); a missing file is not found (3).
  RunResult r = Run({"submit", "--method", "lora", "--train", "ds-1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "give --model NAME")) << r.err;
  r = Run({"submit", "--model", "m", "--method", "lora", "--train", "no-such-file.jsonl"});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err,
                                "'no-such-file.jsonl' is neither a local file nor a "
                                "dataset id"))
      << r.err;
  EXPECT_TRUE(server_.service.creates.empty());
}

TEST_F(CommandsTest, SubmitPrintsEveryBadLineOfTheDataset) {
  std::string train = Write("train.jsonl", "{\"text\": \"ok\"}\nBAD\n{\"text\": \"ok\"}\nBAD\n");
  RunResult r = Run({"submit", "--model", "m", "--method", "lora", "--train", train});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err, "error: uploading " + train +
                       ": train.jsonl: 2 bad lines\n"
                       "  line 2: field \"text\": must be a non-empty string\n"
                       "  line 4: field \"text\": must be a non-empty string\n"
                       "  fix those lines, or train on the others with --skip-bad-lines\n");
  EXPECT_TRUE(server_.service.creates.empty());
}

TEST_F(CommandsTest, SubmitRefusedByValidationExitsInvalid) {
  RunResult r = Run({"submit", "--model", "missing-model", "--method", "lora", "--train", "ds-1"});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.out, "failed")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "(field base_model)")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "fix it and submit again")) << r.out;
}

TEST_F(CommandsTest, ListTableFiltersAndPages) {
  AddJob("j-2", v1::QUEUED, {{"team", "nlp"}});
  AddJob("j-3", v1::SUCCEEDED, {{"team", "cv"}});
  AddJob("j-4", v1::QUEUED);
  RunResult r = Run({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[0], "ID   NAME   STATE             METHOD  STEP    LOSS"))
      << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[1], "j-1  first  running/training  lora    40/100  1.25"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "hut_s")) << r.out;

  r = Run({"list", "--state", "queued,succeeded", "--label", "team=nlp", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto& req = server_.service.lists.back();
  ASSERT_EQ(req.states_size(), 2);
  EXPECT_EQ(req.states(0), v1::QUEUED);
  EXPECT_EQ(req.labels().at("team"), "nlp");
  json j = ParseJson(r);
  ASSERT_EQ(j["jobs"].size(), 1u);
  EXPECT_EQ(j["jobs"][0]["id"], "j-2");

  // --limit stops after that many across pages and says how to go on.
  r = Run({"list", "--limit", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(r.out, '\n', absl::SkipEmpty())).size(), 4u);
  EXPECT_TRUE(absl::StrContains(r.err, "--page-token 3")) << r.err;
  r = Run({"list", "--page-token", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["jobs"][0]["id"], "j-4");
  // Malformed flag values are usage errors (2), as cli.md's table says.
  r = Run({"list", "--state", "sleeping"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--state: unknown state 'sleeping'")) << r.err;
  r = Run({"list", "--label", "team"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "'team' is not key=value")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "--label: --label:")) << r.err;
}

TEST_F(CommandsTest, GetShowsTheJob) {
  RunResult r = Run({"get", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "state:")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "running/training")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "step 40/100  loss 1.25")) << r.out;
  r = Run({"get", "j-1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = ParseJson(r);
  EXPECT_EQ(j["id"], "j-1");
  EXPECT_EQ(j["progress"]["total_steps"], "100");
  EXPECT_TRUE(j.contains("display_name"));  // proto field names, every primitive field
  r = Run({"get", "j-404"});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err, "getting job j-404: no job j-404")) << r.err;
}

TEST_F(CommandsTest, EventsPrintsTheLog) {
  {
    std::lock_guard<std::mutex> lock(server_.service.mu);
    for (int i = 1; i <= 3; ++i) {
      v1::JobEvent e;
      e.set_id(i);
      e.set_job_id("j-1");
      e.set_level(v1::JobEvent::INFO);
      e.set_state(v1::RUNNING);
      e.set_message("event " + std::to_string(i));
      server_.service.events.push_back(e);
    }
  }
  RunResult r = Run({"events", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(r.out, '\n', absl::SkipEmpty())).size(), 3u);
  EXPECT_TRUE(absl::StrContains(r.out, "INFO     running  event 2")) << r.out;
  r = Run({"events", "j-1", "--after", "1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = ParseJson(r);
  ASSERT_EQ(j["events"].size(), 2u);
  EXPECT_EQ(j["events"][0]["message"], "event 2");
  EXPECT_EQ(Run({"events", "j-9"}).code, 3);
}

TEST_F(CommandsTest, CancelQueuedAndRunning) {
  AddJob("j-2", v1::QUEUED);
  RunResult r = Run({"cancel", "j-2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job j-2 cancelled\n");
  r = Run({"cancel", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "job j-1 is cancelling")) << r.out;
  r = Run({"cancel", "j-2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["state"], "CANCELLED");
  EXPECT_EQ(Run({"cancel", "nope"}).code, 3);
}

TEST_F(CommandsTest, DatasetsUploadAndList) {
  std::string file = Write("d.jsonl", "{\"text\": \"x\"}\n");
  RunResult r = Run({"datasets", "upload", file});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "uploaded d.jsonl -> ds-")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "(1 line, text, 14 B)")) << r.out;
  r = Run({"datasets", "upload", file, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["lines"], "1");

  std::string bad = Write("bad.jsonl", "BAD\n");
  r = Run({"datasets", "upload", bad});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.err,
                                "bad.jsonl: 1 bad lines\n  line 1: field \"text\": must be "
                                "a non-empty string\n  fix those lines"))
      << r.err;

  {
    std::lock_guard<std::mutex> lock(server_.service.mu);
    v1::Dataset d;
    d.set_id("ds-0123456789abcdef");
    d.set_filename("train.jsonl");
    d.set_format("messages");
    d.set_lines(1024);
    d.set_size_bytes(3 << 20);
    server_.service.datasets.push_back(d);
  }
  r = Run({"datasets", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID                   FILENAME     FORMAT    LINES  SIZE     AGE\n"
            "ds-0123456789abcdef  train.jsonl  messages  1024   3.0 MiB  -\n");
  r = Run({"datasets", "list", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["datasets"][0]["format"], "messages");
}

TEST_F(CommandsTest, ModelsList) {
  {
    std::lock_guard<std::mutex> lock(server_.service.mu);
    v1::Model m;
    m.set_name("tiny-llama");
    m.set_architecture("LlamaForCausalLM");
    m.set_parameters(4200000);
    m.set_size_bytes(16 << 20);
    server_.service.models.push_back(m);
    v1::Model g;
    g.set_name("tiny-gpt2");
    g.set_architecture("GPT2LMHeadModel");
    g.set_parameters(150000);
    g.set_size_bytes(1 << 20);
    server_.service.models.push_back(g);
  }
  RunResult r = Run({"models", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME        ARCHITECTURE      TASKS              PARAMETERS  SIZE\n"
            "tiny-llama  LlamaForCausalLM  CAUSAL_LM,SEQ_CLS  4.20M       16.0 MiB\n"
            "tiny-gpt2   GPT2LMHeadModel   CAUSAL_LM          150k        1.0 MiB\n");
  r = Run({"--json", "models", "list"});  // global flag before the command works too
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["models"][0]["name"], "tiny-llama");
}

TEST_F(CommandsTest, ExitCodePerStatusCode) {
  struct Case {
    grpc::StatusCode code;
    int exit_code;
    const char* says;
  };
  const Case cases[] = {
      {grpc::StatusCode::NOT_FOUND, 3, "no such thing"},
      {grpc::StatusCode::INVALID_ARGUMENT, 4, "no such thing"},
      {grpc::StatusCode::UNAUTHENTICATED, 5, "--token, --token-file or PEFTD_TOKEN"},
      {grpc::StatusCode::PERMISSION_DENIED, 5, "permission denied"},
      {grpc::StatusCode::UNAVAILABLE, 6, "is the server running?"},
      {grpc::StatusCode::DEADLINE_EXCEEDED, 6, "raise --timeout"},
      {grpc::StatusCode::FAILED_PRECONDITION, 1, "no such thing"},
      {grpc::StatusCode::INTERNAL, 1, "no such thing"},
  };
  for (const Case& c : cases) {
    server_.service.forced = grpc::Status(c.code, "no such thing");
    for (std::vector<std::string> args : {std::vector<std::string>{"get", "j-1"},
                                          {"list"},
                                          {"cancel", "j-1"},
                                          {"events", "j-1"},
                                          {"datasets", "list"},
                                          {"models", "list"},
                                          {"watch", "j-1"},
                                          {"download", "j-1"}}) {
      if (c.code == grpc::StatusCode::UNAVAILABLE && args[0] == "watch") {
        args.insert(args.end(), {"--reconnect-timeout", "0.01"});
      }
      RunResult r = Run(args);
      EXPECT_EQ(r.code, c.exit_code) << args[0] << " " << c.code << "\n" << r.err;
      EXPECT_TRUE(absl::StrContains(r.err, c.says)) << args[0] << "\n" << r.err;
      EXPECT_TRUE(r.out.empty()) << args[0] << "\n" << r.out;
    }
  }
}

TEST_F(CommandsTest, BearerTokenFromFlagFileOrEnvironment) {
  server_.service.required_token = "s3cret";
  RunResult r = Run({"get", "j-1"});
  EXPECT_EQ(r.code, 5);
  EXPECT_TRUE(absl::StrContains(r.err, "this server needs a token")) << r.err;
  r = Run({"--token", "wrong", "get", "j-1"});
  EXPECT_EQ(r.code, 5);
  EXPECT_TRUE(absl::StrContains(r.err, "check the token")) << r.err;
  EXPECT_EQ(Run({"--token", "s3cret", "get", "j-1"}).code, 0);
  EXPECT_EQ(server_.service.authorizations.back(), "Bearer s3cret");
  std::string file = Write("token", "s3cret\n");
  EXPECT_EQ(Run({"get", "j-1", "--token-file", file}).code, 0);
  setenv("PEFTD_TOKEN", "s3cret", 1);
  EXPECT_EQ(Run({"get", "j-1"}).code, 0);
  unsetenv("PEFTD_TOKEN");
  r = Run({"get", "j-1", "--token-file", (dir_ / "missing").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err, "--token-file: cannot read")) << r.err;
}

TEST_F(CommandsTest, ServerFromEnvironment) {
  setenv("PEFTD_SERVER", server_.address().c_str(), 1);
  RunResult r = RunCli({"get", "j-1"});
  unsetenv("PEFTD_SERVER");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(CommandsTest, UsageErrorsExit2) {
  EXPECT_EQ(Run({}).code, 2);
  EXPECT_EQ(Run({"frobnicate"}).code, 2);
  EXPECT_EQ(Run({"get"}).code, 2);
  EXPECT_EQ(Run({"list", "--bogus"}).code, 2);
  EXPECT_EQ(Run({"datasets"}).code, 2);
  RunResult r = Run({"submit", "--label", "novalue"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "not key=value")) << r.err;
  r = Run({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "7  the watched job ended FAILED")) << r.out;
}

TEST_F(CommandsTest, HealthIsTheStandardCheck) {
  RunResult r = Run({"health"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "peftd at " + server_.address() + ": SERVING\n");
  server_.SetServing(false);
  r = Run({"health", "--json"});
  EXPECT_EQ(r.code, 6);
  EXPECT_EQ(ParseJson(r)["status"], "NOT_SERVING");
  // The standard check answers NOT_FOUND for a service it does not know: not SERVING, so 6 as
  // every other answer but SERVING (before: 3), and said on stdout.
  r = Run({"health", "--service", "no.such.Service"});
  EXPECT_EQ(r.code, 6);
  EXPECT_EQ(r.out, "peftd at " + server_.address() + " (no.such.Service): SERVICE_UNKNOWN\n");
}

TEST(Unreachable, SaysWhatToDo) {
  RunResult r = RunCli({"--server", "127.0.0.1:1", "list"});
  EXPECT_EQ(r.code, 6);
  EXPECT_TRUE(absl::StrContains(
      r.err,
      "cannot reach peftd at 127.0.0.1:1 while listing jobs: is the server running? "
      "(--server / PEFTD_SERVER)"))
      << r.err;
}

}  // namespace
}  // namespace peftd::cli
