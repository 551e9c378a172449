// The Prometheus series of DESIGN.md, scraped through a real HTTP GET on loopback, checked by
// promtool, and the live-job series gone once the job is removed.
#include "server/metrics.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// GET http://127.0.0.1:<port><path>; returns the whole response (status line, headers, body).
std::string HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return response;
}

std::string Body(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

// The value of the sample line that starts with `series` (name and labels, exactly as printed).
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

v1::JobProgress GatedLoraProgress() {
  v1::JobProgress p;
  p.set_step(5);
  p.set_total_steps(20);
  p.set_tokens_seen(1000);
  p.set_train_loss(2.5);
  p.set_learning_rate(1e-4);
  p.set_grad_norm(0.75);
  p.set_tokens_per_second(321);
  p.set_eta_seconds(30);
  auto* g = p.add_gates();
  g->set_module("model.layers.3.self_attn.q_proj");
  g->set_sparsity(0.4);
  g->set_tau(0.01);
  g->set_token_sparsity(0.375);
  g = p.add_gates();
  g->set_module("model.layers.0.self_attn.v_proj");
  g->set_sparsity(0.25);
  g->set_tau(0.02);
  g->set_token_sparsity(0.125);
  return p;
}

TEST(ModuleLabel, LayerIndexAndProjection) {
  EXPECT_EQ(ModuleLabel("model.layers.3.self_attn.q_proj"), "3.q_proj");
  EXPECT_EQ(ModuleLabel("model.layers.12.mlp.down_proj"), "12.down_proj");
  EXPECT_EQ(ModuleLabel("base_model.model.model.layers.0.self_attn.v_proj"), "0.v_proj");
  EXPECT_EQ(ModuleLabel("transformer.h.11.attn.c_attn"), "11.c_attn");
  EXPECT_EQ(ModuleLabel("model.layers.7"), "7");
  EXPECT_EQ(ModuleLabel("lm_head"), "lm_head");
  EXPECT_EQ(ModuleLabel("model.norm"), "norm");
  EXPECT_EQ(ModuleLabel("score"), "score");
}

TEST(Metrics, ServesEverySeriesOverHttpAndDropsAJobsSeries) {
  Metrics metrics;
  auto server = MetricsServer::Start("127.0.0.1:0", metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  metrics.JobSubmitted(v1::LORA);
  metrics.JobSubmitted(v1::LORA);
  metrics.JobSubmitted(v1::ADALORA);
  metrics.JobFinished(v1::LORA, v1::SUCCEEDED);
  metrics.SetJobsByState({{v1::QUEUED, 2}, {v1::RUNNING, 1}});
  metrics.SetWorkers({{"idle", 1}, {"busy", 2}});
  metrics.ObserveQueueWait(3.5);
  metrics.ObserveStepDurations({0.02, 0.03, 0.2});
  metrics.UpdateJobProgress("job-a", v1::LORA, GatedLoraProgress());

  v1::JobProgress ada;
  ada.set_step(2);
  ada.set_total_steps(4);
  ada.set_has_eval(true);
  ada.set_eval_loss(3.25);
  ada.set_eval_accuracy(0.5);
  auto* r = ada.add_adalora_ranks();
  r->set_module("model.layers.1.self_attn.k_proj");
  r->set_rank(6);
  metrics.UpdateJobProgress("job-b", v1::ADALORA, ada);

  v1::JobProgress dhp;
  dhp.set_step(1);
  dhp.set_adadhp_active_modules(7);
  metrics.UpdateJobProgress("job-c", v1::ADADHP, dhp);

  const std::string response = HttpGet((*server)->port(), "/metrics");
  ASSERT_THAT(response, HasSubstr("200 OK"));
  const std::string text = Body(response);

  EXPECT_EQ(Sample(text, "peftd_build_info{version=\"0.1.0\"}"), 1);
  EXPECT_GT(Sample(text, "peftd_start_time_seconds"), 1.6e9);
  EXPECT_EQ(Sample(text, "peftd_jobs{state=\"queued\"}"), 2);
  EXPECT_EQ(Sample(text, "peftd_jobs{state=\"running\"}"), 1);
  EXPECT_EQ(Sample(text, "peftd_jobs{state=\"cancelled\"}"), 0);
  EXPECT_EQ(Sample(text, "peftd_jobs_submitted_total{method=\"lora\"}"), 2);
  EXPECT_EQ(Sample(text, "peftd_jobs_submitted_total{method=\"adalora\"}"), 1);
  EXPECT_EQ(Sample(text, "peftd_jobs_finished_total{method=\"lora\",state=\"succeeded\"}"), 1);
  EXPECT_EQ(Sample(text, "peftd_workers{status=\"busy\"}"), 2);
  EXPECT_EQ(Sample(text, "peftd_job_queue_wait_seconds_count"), 1);
  EXPECT_EQ(Sample(text, "peftd_job_queue_wait_seconds_bucket{le=\"5\"}"), 1);
  EXPECT_EQ(Sample(text, "peftd_job_queue_wait_seconds_bucket{le=\"2.5\"}"), 0);
  EXPECT_EQ(Sample(text, "peftd_train_step_duration_seconds_count"), 3);
  EXPECT_EQ(Sample(text, "peftd_train_step_duration_seconds_bucket{le=\"0.025\"}"), 1);

  EXPECT_EQ(Sample(text, "peftd_train_loss{job_id=\"job-a\",method=\"lora\"}"), 2.5);
  EXPECT_EQ(Sample(text, "peftd_learning_rate{job_id=\"job-a\"}"), 1e-4);
  EXPECT_EQ(Sample(text, "peftd_grad_norm{job_id=\"job-a\"}"), 0.75);
  EXPECT_EQ(Sample(text, "peftd_train_tokens_total{job_id=\"job-a\"}"), 1000);
  EXPECT_EQ(Sample(text, "peftd_train_tokens_per_second{job_id=\"job-a\"}"), 321);
  EXPECT_EQ(Sample(text, "peftd_job_progress_ratio{job_id=\"job-a\"}"), 0.25);
  EXPECT_EQ(Sample(text, "peftd_job_eta_seconds{job_id=\"job-a\"}"), 30);
  EXPECT_EQ(Sample(text, "peftd_gate_sparsity_ratio{job_id=\"job-a\",module=\"3.q_proj\"}"), 0.4);
  EXPECT_EQ(Sample(text, "peftd_gate_sparsity_ratio{job_id=\"job-a\",module=\"0.v_proj\"}"), 0.25);
  // The token-weighted figure has its own series (the paper's per-sequence one is the above).
  EXPECT_EQ(Sample(text, "peftd_gate_token_sparsity_ratio{job_id=\"job-a\",module=\"3.q_proj\"}"),
            0.375);
  EXPECT_EQ(Sample(text, "peftd_gate_token_sparsity_ratio{job_id=\"job-a\",module=\"0.v_proj\"}"),
            0.125);
  EXPECT_EQ(Sample(text, "peftd_gate_tau{job_id=\"job-a\",module=\"3.q_proj\"}"), 0.01);
  // No eval yet for job-a: no eval series rather than a misleading 0.
  EXPECT_THAT(text, Not(HasSubstr("peftd_eval_loss{job_id=\"job-a\"}")));

  EXPECT_EQ(Sample(text, "peftd_eval_loss{job_id=\"job-b\"}"), 3.25);
  EXPECT_EQ(Sample(text, "peftd_eval_accuracy{job_id=\"job-b\"}"), 0.5);
  EXPECT_EQ(Sample(text, "peftd_adalora_rank{job_id=\"job-b\",module=\"1.k_proj\"}"), 6);
  EXPECT_EQ(Sample(text, "peftd_adadhp_active_modules{job_id=\"job-c\"}"), 7);
  EXPECT_THAT(text, HasSubstr("# TYPE peftd_job_queue_wait_seconds histogram"));
  EXPECT_THAT(text, HasSubstr("# TYPE peftd_train_tokens_total counter"));

  metrics.RemoveJob("job-a");
  metrics.RemoveJob("job-a");    // idempotent
  metrics.RemoveJob("no-such");  // unknown: no-op
  const std::string after = Body(HttpGet((*server)->port(), "/metrics"));
  EXPECT_THAT(after, Not(HasSubstr("job-a")));
  EXPECT_THAT(after, HasSubstr("job_id=\"job-b\""));
  // Fleet-wide series stay.
  EXPECT_EQ(Sample(after, "peftd_jobs_submitted_total{method=\"lora\"}"), 2);
}

// Issue 13: a gang's per-rank step time and allreduce seconds, one series per rank, from the
// first report that has them (before the first step too), gone with the job.
TEST(Metrics, GangRanksHaveStepAndAllreduceSeries) {
  Metrics metrics;
  v1::JobProgress p;
  p.add_rank_step_seconds(0);
  p.add_rank_step_seconds(0.5);
  p.add_rank_allreduce_seconds(0.25);
  p.add_rank_allreduce_seconds(0.125);
  metrics.UpdateJobProgress("g", v1::LORA, p);
  std::string text = metrics.Serialize();
  EXPECT_EQ(Sample(text, "peftd_rank_step_seconds{job_id=\"g\",rank=\"1\"}"), 0.5);
  EXPECT_THAT(text, Not(HasSubstr("peftd_rank_step_seconds{job_id=\"g\",rank=\"0\"}")));
  EXPECT_EQ(Sample(text, "peftd_rank_allreduce_seconds{job_id=\"g\",rank=\"0\"}"), 0.25);
  EXPECT_EQ(Sample(text, "peftd_rank_allreduce_seconds{job_id=\"g\",rank=\"1\"}"), 0.125);
  metrics.RemoveJob("g");
  text = metrics.Serialize();
  EXPECT_THAT(text, Not(HasSubstr("job_id=\"g\"")));
}

TEST(Metrics, TokensCounterOnlyGrowsAndWorkerStatusesGoToZero) {
  Metrics metrics;
  v1::JobProgress p;
  p.set_step(1);
  p.set_tokens_seen(500);
  metrics.UpdateJobProgress("j", v1::LORA, p);
  p.set_tokens_seen(800);
  metrics.UpdateJobProgress("j", v1::LORA, p);
  p.set_tokens_seen(100);  // a report that went backwards must not lower a counter
  metrics.UpdateJobProgress("j", v1::LORA, p);
  EXPECT_EQ(Sample(metrics.Serialize(), "peftd_train_tokens_total{job_id=\"j\"}"), 800);

  metrics.SetWorkers({{"idle", 3}});
  metrics.SetWorkers({{"busy", 1}});
  const std::string text = metrics.Serialize();
  EXPECT_EQ(Sample(text, "peftd_workers{status=\"idle\"}"), 0);
  EXPECT_EQ(Sample(text, "peftd_workers{status=\"busy\"}"), 1);

  // A job removed and reported again (a new attempt) starts a fresh counter series.
  metrics.RemoveJob("j");
  p.set_tokens_seen(900);
  metrics.UpdateJobProgress("j", v1::LORA, p);
  EXPECT_EQ(Sample(metrics.Serialize(), "peftd_train_tokens_total{job_id=\"j\"}"), 900);
}

TEST(Metrics, AReportBeforeTheFirstStepSetsNoTrainSeries) {
  Metrics metrics;
  v1::JobProgress p = GatedLoraProgress();
  p.set_step(0);
  p.set_eval_loss(3.25);
  p.set_has_eval(true);
  metrics.UpdateJobProgress("j", v1::LORA, p);
  std::string text = metrics.Serialize();
  EXPECT_EQ(Sample(text, "peftd_eval_loss{job_id=\"j\"}"), 3.25);
  EXPECT_THAT(text, Not(HasSubstr("peftd_train_loss{")));
  EXPECT_THAT(text, Not(HasSubstr("peftd_gate_sparsity_ratio{")));
  EXPECT_THAT(text, Not(HasSubstr("peftd_gate_token_sparsity_ratio{")));
  EXPECT_THAT(text, Not(HasSubstr("peftd_learning_rate{")));

  p.set_step(5);
  metrics.UpdateJobProgress("j", v1::LORA, p);
  text = metrics.Serialize();
  EXPECT_EQ(Sample(text, "peftd_train_loss{job_id=\"j\",method=\"lora\"}"), 2.5);
  EXPECT_THAT(text, HasSubstr("peftd_gate_sparsity_ratio{"));
}

TEST(Metrics, ConcurrentUpdatesAndScrapesAreSafe) {
  Metrics metrics;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string id = absl::StrCat("job-", t, "-", i % 5);
        metrics.UpdateJobProgress(id, v1::LORA, GatedLoraProgress());
        metrics.ObserveStepDurations({0.01});
        if (i % 7 == 0) metrics.RemoveJob(id);
        if (i % 11 == 0) metrics.Serialize();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Sample(metrics.Serialize(), "peftd_train_step_duration_seconds_count"), 800);
}

TEST(Metrics, PromtoolAcceptsTheExposition) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package `prometheus`, in "
                    "scripts/install-deps.sh); the exposition was not linted";
  }
  Metrics metrics;
  metrics.JobSubmitted(v1::DORA);
  metrics.JobFinished(v1::DORA, v1::FAILED);
  metrics.SetJobsByState({{v1::RUNNING, 1}});
  metrics.SetWorkers({{"busy", 1}});
  metrics.ObserveQueueWait(1);
  metrics.ObserveStepDurations({0.5});
  auto p = GatedLoraProgress();
  p.set_has_eval(true);
  p.set_eval_loss(2);
  p.add_adalora_ranks()->set_module("model.layers.2.mlp.up_proj");
  p.set_adadhp_active_modules(3);
  metrics.UpdateJobProgress("job-x", v1::DORA, p);
  auto server = MetricsServer::Start("127.0.0.1:0", metrics);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string text = Body(HttpGet((*server)->port(), "/metrics"));
  ASSERT_THAT(text, HasSubstr("peftd_gate_sparsity_ratio"));

  const fs::path dir = fs::temp_directory_path() / absl::StrCat("peftd_promtool_", ::getpid());
  fs::create_directories(dir);
  const std::string in = (dir / "metrics.txt").string(), out = (dir / "promtool.txt").string();
  std::ofstream(in) << text;
  const int rc =
      std::system(absl::StrCat("promtool check metrics < ", in, " > ", out, " 2>&1").c_str());
  std::ifstream report(out);
  const std::string findings((std::istreambuf_iterator<char>(report)), {});
  fs::remove_all(dir);
  EXPECT_EQ(rc, 0) << findings;
  EXPECT_EQ(findings, "") << findings;
}

TEST(MetricsServer, BusyPortIsAClearError) {
  Metrics metrics;
  auto first = MetricsServer::Start("127.0.0.1:0", metrics);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), metrics);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--metrics-listen"));
}

}  // namespace
}  // namespace peftd::server
