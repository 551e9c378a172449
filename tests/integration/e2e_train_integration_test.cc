// End to end with the real binaries: `peftctl submit` a job on the built-in tiny model, a real
// `peftd-worker` trains it (a --local-workers child of peftd, or a remote one started with
// --server), `peftctl download` fetches the adapter, and the folder is checked key by key and
// loaded by `peftd-worker eval` (the project's adapter loading code). Both runs go over TLS with a
// bearer token, so that the worker's channel and token handling are those of peftctl.
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
using testing::BackgroundProcess;
using testing::Concat;
using testing::kExamples;
using testing::kWorker;
using testing::MetricLines;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunCommand;
using testing::RunResult;
using testing::Words;

// A CA and a server certificate it signed, and a self-signed one; both for IP 127.0.0.1.
bool MakeCertificates(const fs::path& dir) {
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script = absl::StrCat(
      "set -e; cd ", dir.string(), "\n",                                                    //
      "openssl req -x509 ", key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=e2e-ca\n",  //
      "openssl req ", key, " -keyout server.key -out server.csr -subj /CN=localhost\n",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext\n",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile san.ext -out server.pem\n",
      "openssl req -x509 ", key,
      " -keyout self.key -out self.pem -days 2 -subj /CN=localhost "
      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  std::ofstream(dir / "make-certs.sh") << script;
  return std::system(absl::StrCat("sh ", (dir / "make-certs.sh").string(), " > ",
                                  (dir / "make-certs.log").string(), " 2>&1")
                         .c_str()) == 0;
}

// `peftctl --json submit ... --watch` prints {"job": Job} lines and {"event": JobEvent} lines.
v1::Job LastJobLine(const std::string& out) {
  v1::Job job;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("job")) {
      EXPECT_TRUE(testing::ParseJson(j["job"].dump(), &job)) << line;
    }
  }
  return job;
}

v1::Job GetJob(const std::string& server, const std::vector<std::string>& global,
               const std::string& id, const std::map<std::string, std::string>& env) {
  std::vector<std::string> args = global;
  args.insert(args.end(), {"--json", "get", id});
  const RunResult r = Peftctl(server, args, env);
  v1::Job job;
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(testing::ParseJson(r.out, &job)) << r.Describe();
  return job;
}

// The mean next-token loss `peftd-worker eval` prints for the model (with the adapter applied).
double EvalLoss(const fs::path& model, const fs::path& adapter, const fs::path& ids) {
  std::vector<std::string> argv = {kWorker,        "eval",      "--model",
                                   model.string(), "--inputs",  ids.string(),
                                   "--loss",       "--threads", "1"};
  if (!adapter.empty()) argv.insert(argv.end(), {"--adapter", adapter.string()});
  const RunResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  // "loss 5.123456 over N predicted tokens".
  const size_t at = r.out.find("loss");
  EXPECT_NE(at, std::string::npos) << r.Describe();
  if (at == std::string::npos) return -1;
  return std::strtod(r.out.c_str() + r.out.find_first_of("0123456789", at), nullptr);
}

// Checks the folder `peftctl download` wrote: PEFT's adapter_config.json and
// adapter_model.safetensors with PEFT's key names and the shapes of rank-`r` LoRA on q_proj and
// v_proj of the 4 layers of the tiny model (hidden 64; 2 of 4 heads for k/v: v_proj is 64 -> 32).
void ExpectLoraAdapterFolder(const fs::path& dir, int r, bool gated) {
  ASSERT_TRUE(fs::is_regular_file(dir / "adapter_config.json")) << dir;
  ASSERT_TRUE(fs::is_regular_file(dir / "adapter_model.safetensors")) << dir;
  const json config = json::parse(testing::ReadFile(dir / "adapter_config.json"));
  EXPECT_EQ(config.value("peft_type", ""), "LORA") << config.dump();
  EXPECT_EQ(config.value("r", 0), r) << config.dump();
  std::set<std::string> targets;
  for (const auto& t : config["target_modules"]) targets.insert(t.get<std::string>());
  EXPECT_EQ(targets, (std::set<std::string>{"q_proj", "v_proj"})) << config.dump();

  auto file = safetensors::File::Open((dir / "adapter_model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> expected;
  for (int layer = 0; layer < 4; ++layer) {
    for (const auto& [module, out] :
         {std::pair<std::string, int64_t>{"q_proj", 64}, {"v_proj", 32}}) {
      const std::string prefix =
          absl::StrCat("base_model.model.model.layers.", layer, ".self_attn.", module, ".");
      expected.insert(prefix + "lora_A.weight");
      expected.insert(prefix + "lora_B.weight");
      auto a = file->Get(prefix + "lora_A.weight");
      auto b = file->Get(prefix + "lora_B.weight");
      ASSERT_TRUE(a.ok() && b.ok()) << prefix;
      EXPECT_EQ(a->shape, (std::vector<int64_t>{r, 64})) << prefix;
      EXPECT_EQ(b->shape, (std::vector<int64_t>{out, r})) << prefix;
      EXPECT_EQ(b->dtype, safetensors::Dtype::kF32);
      // B starts at zero: a trained adapter has moved it.
      const float* bv = reinterpret_cast<const float*>(b->data);
      bool moved = false;
      for (int64_t i = 0; i < b->numel(); ++i) moved = moved || bv[i] != 0.0f;
      EXPECT_TRUE(moved) << prefix << "lora_B is still zero";
    }
  }
  const std::vector<std::string> names = file->names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected);
  if (gated) {
    ASSERT_TRUE(config.contains("token_gate")) << config.dump();
    EXPECT_EQ(config["token_gate"]["tau"].size(), 8u) << config.dump();
  } else {
    EXPECT_FALSE(config.contains("token_gate")) << config.dump();
  }
}

void WriteEvalIds(const fs::path& path) {
  std::ofstream(path) << "[[1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50], [7, 8, 9, 10, 11]]";
}

TEST(E2e, LoraJobFromPeftctlOnALocalWorkerSucceedsAndItsDownloadedAdapterLoads) {
  const fs::path dir = testing::FreshTestDir("lora");
  ASSERT_TRUE(MakeCertificates(dir)) << testing::ReadFile(dir / "make-certs.log");
  // A self-signed certificate: the --local-workers child trusts the server's own --tls-cert, and
  // gets the token through the file the supervisor writes.
  PeftdProcess server((dir / "data").string(),
                      {"--model-root=" + (dir / "models").string(), "--local-workers=1",
                       "--heartbeat-interval=500ms", "--lease-timeout=5s",
                       "--tls-cert=" + (dir / "self.pem").string(),
                       "--tls-key=" + (dir / "self.key").string(), "--auth-token=e2e-token"});
  server.set_tls_root(testing::ReadFile(dir / "self.pem"));
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const std::map<std::string, std::string> env = {{"PEFTD_TOKEN", "e2e-token"}};
  const std::vector<std::string> tls = {"--tls-ca", (dir / "self.pem").string()};
  auto with_tls = [&](std::vector<std::string> args) {
    args.insert(args.begin(), tls.begin(), tls.end());
    return args;
  };

  // One CPU thread (steady step times on a busy 2-core machine) from a job file, the rest from
  // flags.
  std::ofstream(dir / "threads.json") << "{\"num_threads\": 1}";
  const std::vector<std::string> submit = with_tls(Concat(
      {"--json", "submit", "-f", (dir / "threads.json").string(), "--train",
       kExamples + "/tiny-lm-train.jsonl", "--val", kExamples + "/tiny-lm-val.jsonl"},
      Words("--model tiny-llama --method lora --rank 4 --steps 12 --batch-size 4 --max-seq-len 48 "
            "--lr 3e-3 --eval-interval 6 --checkpoint-interval 6 --request-id r-e2e-lora "
            "--label suite=e2e")));
  std::vector<std::string> submit_watch = submit;
  submit_watch.push_back("--watch");
  const RunResult watched = Peftctl(server.address(), submit_watch, env);
  ASSERT_EQ(watched.exit_code, 0) << watched.Describe() << testing::ReadFile(dir / "peftd.log");
  const v1::Job last = LastJobLine(watched.out);
  ASSERT_FALSE(last.id().empty()) << watched.Describe();
  EXPECT_EQ(last.state(), v1::SUCCEEDED) << last.DebugString();

  const v1::Job job = GetJob(server.address(), tls, last.id(), env);
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.progress().step(), 12);
  EXPECT_EQ(job.progress().total_steps(), 12);
  EXPECT_TRUE(job.progress().has_eval());
  EXPECT_GT(job.progress().eval_loss(), 0);
  EXPECT_EQ(job.labels().at("suite"), "e2e");
  EXPECT_EQ(job.worker_id(), "");
  EXPECT_FALSE(job.adapter_sha256().empty());
  EXPECT_GT(job.trainable_parameters(), 0);
  EXPECT_LT(job.trainable_parameters(), job.total_parameters());
  EXPECT_GE(job.checkpoints_size(), 1) << "checkpoint_interval_steps 6 of 12 steps";
  EXPECT_EQ(job.train_stats().records(), 400);

  // The same request id again: the same job, not a second one.
  const RunResult again = Peftctl(server.address(), submit, env);
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  v1::Job same;
  ASSERT_TRUE(testing::ParseJson(again.out, &same)) << again.Describe();
  EXPECT_EQ(same.id(), job.id());
  const RunResult list = Peftctl(server.address(), with_tls({"--json", "list"}), env);
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(testing::ParseJson(list.out, &jobs)) << list.Describe();
  EXPECT_EQ(jobs.jobs_size(), 1);

  const fs::path adapter = dir / "adapter";
  const RunResult dl = Peftctl(
      server.address(), with_tls({"--json", "download", job.id(), "-o", adapter.string()}), env);
  ASSERT_EQ(dl.exit_code, 0) << dl.Describe();
  const json got = json::parse(dl.out);
  EXPECT_EQ(got.value("sha256", ""), job.adapter_sha256());
  EXPECT_EQ(got.value("path", ""), adapter.string());
  ExpectLoraAdapterFolder(adapter, 4, /*gated=*/false);

  // The project's loading code applies it: the tiny model's loss changes with the adapter on.
  WriteEvalIds(dir / "ids.json");
  const double base = EvalLoss(dir / "models" / "tiny-llama", {}, dir / "ids.json");
  const double adapted = EvalLoss(dir / "models" / "tiny-llama", adapter, dir / "ids.json");
  EXPECT_GT(base, 0);
  EXPECT_GT(adapted, 0);
  EXPECT_NE(base, adapted);

  // Without the token, and without TLS, the server refuses with the CLI's exit codes.
  EXPECT_EQ(Peftctl(server.address(), with_tls({"list"})).exit_code, 5);
  EXPECT_EQ(Peftctl(server.address(), {"list"}, env).exit_code, 6);
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

TEST(E2e, GatedLoraOnARemoteWorkerShowsLossAndSparsitySeriesWhileItRuns) {
  const fs::path dir = testing::FreshTestDir("gate");
  ASSERT_TRUE(MakeCertificates(dir)) << testing::ReadFile(dir / "make-certs.log");
  // A CA-signed certificate, remote workers only: the worker dials with --tls-ca and finds its
  // token (the workers' token, not the users') in PEFTD_TOKEN, as peftctl does.
  PeftdProcess server(
      (dir / "data").string(),
      {"--model-root=" + (dir / "models").string(), "--local-workers=0",
       "--heartbeat-interval=200ms", "--lease-timeout=5s",
       "--tls-cert=" + (dir / "server.pem").string(), "--tls-key=" + (dir / "server.key").string(),
       "--auth-token=gate-token", "--worker-token=gate-worker-token"});
  server.set_tls_root(testing::ReadFile(dir / "ca.pem"));
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const RunResult made =
      RunCommand({kWorker, "make-tiny-model", (dir / "models" / "tiny-llama").string()});
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  BackgroundProcess worker;
  worker.Start({kWorker, "--server", server.address(), "--tls-ca", (dir / "ca.pem").string(),
                "--worker-id", "remote-1", "--cache-dir", (dir / "cache").string(), "--model-root",
                (dir / "models").string()},
               {{"PEFTD_TOKEN", "gate-worker-token"}}, (dir / "worker.log").string());

  const std::map<std::string, std::string> env = {{"PEFTD_TOKEN", "gate-token"}};
  const std::vector<std::string> tls = {"--tls-ca", (dir / "ca.pem").string()};
  std::ofstream(dir / "threads.json") << "{\"num_threads\": 1}";
  const std::vector<std::string> submit = Concat(
      Concat(tls, {"--json", "submit", "-f", (dir / "threads.json").string(), "--train",
                   kExamples + "/tiny-lm-train.jsonl"}),
      Words("--model tiny-llama --method lora --gate --gate-s 0.05 --gate-lambda 1e-3 --rank 4 "
            "--steps 600 --batch-size 4 --max-seq-len 48 --lr 3e-3 --checkpoint-interval 200"));
  const RunResult submitted = Peftctl(server.address(), submit, env);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.Describe();
  v1::Job job;
  ASSERT_TRUE(testing::ParseJson(submitted.out, &job)) << submitted.Describe();
  EXPECT_TRUE(job.spec().token_gate().enabled());

  // While it trains, one scrape holds both live series of the job.
  const std::string label = absl::StrCat("job_id=\"", job.id(), "\"");
  std::string scraped;
  bool seen = false;
  testing::WaitUntil(
      [&] {
        scraped = testing::ScrapeMetrics(server.metrics_address());
        seen = !MetricLines(scraped, "peftd_train_loss", {label, "method=\"lora\""}).empty() &&
               !MetricLines(scraped, "peftd_gate_sparsity_ratio", {label, "module=\""}).empty();
        return seen || !worker.Alive();
      },
      std::chrono::seconds(90));
  ASSERT_TRUE(seen) << "no peftd_train_loss and peftd_gate_sparsity_ratio series for " << job.id()
                    << " while it ran:\n"
                    << scraped << "\n--- worker log:\n"
                    << testing::ReadFile(dir / "worker.log");
  // One series a module: 4 layers x {q_proj, v_proj}, named layer.projection.
  EXPECT_EQ(MetricLines(scraped, "peftd_gate_sparsity_ratio", {label}).size(), 8u) << scraped;
  EXPECT_EQ(
      MetricLines(scraped, "peftd_gate_sparsity_ratio", {label, "module=\"0.q_proj\""}).size(), 1u)
      << scraped;
  EXPECT_EQ(MetricLines(scraped, "peftd_gate_tau", {label}).size(), 8u) << scraped;
  EXPECT_FALSE(MetricLines(scraped, "peftd_workers", {"status=\"", "} 1"}).empty()) << scraped;
  const std::string log = testing::ReadFile(dir / "worker.log");
  EXPECT_TRUE(absl::StrContains(log, "over TLS with a token")) << log;

  std::vector<std::string> watch = tls;
  watch.insert(watch.end(), {"watch", job.id()});
  const RunResult watched = Peftctl(server.address(), watch, env);
  ASSERT_EQ(watched.exit_code, 0) << watched.Describe() << testing::ReadFile(dir / "worker.log");
  EXPECT_TRUE(absl::StrContains(watched.out, "sparsity")) << watched.out;

  const v1::Job done = GetJob(server.address(), tls, job.id(), env);
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_EQ(done.progress().gates_size(), 8);
  for (const auto& g : done.progress().gates()) {
    EXPECT_GE(g.sparsity(), 0.0) << g.module();
    EXPECT_LE(g.sparsity(), 1.0) << g.module();
  }
  // The job's series end with it.
  scraped = testing::ScrapeMetrics(server.metrics_address());
  EXPECT_TRUE(MetricLines(scraped, "peftd_train_loss", {label}).empty()) << scraped;
  EXPECT_TRUE(MetricLines(scraped, "peftd_gate_sparsity_ratio", {label}).empty()) << scraped;
  EXPECT_FALSE(
      MetricLines(scraped, "peftd_jobs_finished_total", {"method=\"lora\"", "state=\"succeeded\""})
          .empty())
      << scraped;

  std::vector<std::string> download = tls;
  download.insert(download.end(), {"download", done.id(), "-o", (dir / "adapter").string()});
  const RunResult dl = Peftctl(server.address(), download, env);
  ASSERT_EQ(dl.exit_code, 0) << dl.Describe();
  ExpectLoraAdapterFolder(dir / "adapter", 4, /*gated=*/true);
  WriteEvalIds(dir / "ids.json");
  EXPECT_GT(EvalLoss(dir / "models" / "tiny-llama", dir / "adapter", dir / "ids.json"), 0);
  worker.Kill();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
