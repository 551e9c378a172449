// Sweeps through the real peftd and the real peftctl, with a scripted worker: `sweep submit`
// queues one child per grid point, at most --max-concurrency run at once, `sweep get --json`
// names the best child by eval loss, a sweep whose child would be refused is refused whole
// naming the child and the field, `sweep cancel` / `sweep watch` act on every child, and
// `peftctl report` writes the sweep's and a child's HTML.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "peftd/v1/worker.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/fake_worker.h"
#include "tests/integration/peftd_process.h"
#include "tests/server/test_model.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::FakeWorker;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunResult;
using testing::Words;

class SweepIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("sweep");
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
    std::ofstream(dir_ / "train.jsonl") << "{\"text\": \"one\"}\n{\"text\": \"two\"}\n";
    server_ = std::make_unique<PeftdProcess>(
        (dir_ / "data").string(),
        std::vector<std::string>{"--model-root=" + (dir_ / "models").string(),
                                 "--heartbeat-interval=200ms", "--lease-timeout=20s",
                                 "--max-sweep-children=8"});
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    address_ = server_->address();
    worker_ = std::make_unique<FakeWorker>(server_->Channel(), "w1");
    ASSERT_TRUE(worker_->Register().ok());
    worker_stub_ = v1::WorkerService::NewStub(server_->Channel());
  }
  void TearDown() override {
    worker_.reset();
    server_.reset();
    fs::remove_all(dir_);
  }

  RunResult Ctl(const std::string& line) { return Peftctl(address_, Words(line)); }

  std::string SubmitArgs() const {
    return absl::StrCat("sweep submit --model tiny --method lora --gate --steps 4 --train ",
                        (dir_ / "train.jsonl").string());
  }

  std::vector<v1::Lease> Lease(int slots) {
    v1::HeartbeatResponse resp;
    EXPECT_TRUE(worker_->Heartbeat(slots, {}, &resp).ok());
    return {resp.leases().begin(), resp.leases().end()};
  }

  // Ends a leased child as SUCCEEDED with `eval_loss`, as a worker would: adapter, then the
  // final report.
  void Succeed(const v1::Lease& lease, double eval_loss) {
    ASSERT_TRUE(worker_->Upload(false, lease.job_id(), lease.attempt(), 0, "adapter").ok());
    v1::CompleteJobRequest req;
    req.set_worker_id("w1");
    req.set_job_id(lease.job_id());
    req.set_attempt(lease.attempt());
    req.set_final_state(v1::SUCCEEDED);
    v1::ProgressReport* r = req.mutable_last_report();
    *r = FakeWorker::Report(lease, 4);
    r->mutable_progress()->set_has_eval(true);
    r->mutable_progress()->set_eval_loss(eval_loss);
    r->mutable_progress()->set_tokens_per_second(1000);
    r->set_trainable_parameters(50);
    r->set_total_parameters(1000);
    grpc::ClientContext ctx;
    v1::CompleteJobResponse resp;
    ASSERT_TRUE(worker_stub_->CompleteJob(&ctx, req, &resp).ok());
  }

  v1::Sweep Get(const std::string& id) {
    RunResult r = Ctl("--json sweep get " + id);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    v1::Sweep sweep;
    EXPECT_TRUE(testing::ParseJson(r.out, &sweep)) << r.out;
    return sweep;
  }

  fs::path dir_;
  std::unique_ptr<PeftdProcess> server_;
  std::string address_;
  std::unique_ptr<FakeWorker> worker_;
  std::unique_ptr<v1::WorkerService::Stub> worker_stub_;
};

TEST_F(SweepIntegrationTest, AGridRunsAtMostMaxConcurrencyAtOnceAndNamesTheBestChild) {
  RunResult submitted = Ctl(SubmitArgs() +
                            " --grid token_gate.lambda=1e-6,1e-5 --grid lora.r=4,8"
                            " --max-concurrency 2 --name lam --json");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.Describe();
  v1::Sweep sweep;
  ASSERT_TRUE(testing::ParseJson(submitted.out, &sweep)) << submitted.out;
  ASSERT_EQ(sweep.children_size(), 4);
  EXPECT_EQ(sweep.state(), v1::SWEEP_RUNNING);
  EXPECT_EQ(sweep.children(3).assignments(1).field(), "lora.r");
  EXPECT_EQ(sweep.children(3).assignments(1).value(), "8");

  std::map<std::string, double> loss = {{sweep.children(0).job_id(), 2.0},
                                        {sweep.children(1).job_id(), 1.5},
                                        {sweep.children(2).job_id(), 0.75},
                                        {sweep.children(3).job_id(), 1.0}};
  std::vector<v1::Lease> first = Lease(4);
  ASSERT_EQ(first.size(), 2u);  // --max-concurrency 2
  EXPECT_EQ(first[0].job_id(), sweep.children(0).job_id());
  EXPECT_EQ(first[0].spec().lora().r(), 4);
  EXPECT_DOUBLE_EQ(first[1].spec().token_gate().lambda(), 1e-6);
  EXPECT_EQ(first[1].spec().lora().r(), 8);
  EXPECT_TRUE(Lease(4).empty());
  for (const auto& l : first) Succeed(l, loss[l.job_id()]);
  std::vector<v1::Lease> second = Lease(4);
  ASSERT_EQ(second.size(), 2u);
  for (const auto& l : second) Succeed(l, loss[l.job_id()]);

  v1::Sweep done = Get(sweep.id());
  EXPECT_EQ(done.state(), v1::SWEEP_SUCCEEDED);
  EXPECT_EQ(done.metric(), v1::EVAL_LOSS);
  EXPECT_EQ(done.best_job_id(), sweep.children(2).job_id());
  EXPECT_DOUBLE_EQ(done.children(1).eval_loss(), 1.5);
  EXPECT_DOUBLE_EQ(done.children(1).trainable_percent(), 5.0);
  EXPECT_DOUBLE_EQ(done.children(1).tokens_per_second(), 1000);

  RunResult human = Ctl("sweep get " + sweep.id());
  ASSERT_EQ(human.exit_code, 0) << human.Describe();
  EXPECT_NE(human.out.find("best:         " + sweep.children(2).job_id()), std::string::npos)
      << human.out;
  EXPECT_NE(
      human.out.find("*  2  " + sweep.children(2).job_id() + "  token_gate.lambda=1e-5 lora.r=4"),
      std::string::npos)
      << human.out;
  RunResult watch = Ctl("sweep watch " + sweep.id());
  EXPECT_EQ(watch.exit_code, 0) << watch.Describe();
  EXPECT_NE(watch.out.find("sweep " + sweep.id() + " succeeded"), std::string::npos) << watch.out;
  EXPECT_NE(watch.out.find("progress: 4/4 ended, 0 running, 0 queued; steps 16/16 (100%)"),
            std::string::npos)
      << watch.out;

  // The report of the sweep and of one child: one HTML file each, with the table and the charts.
  const std::string html = (dir_ / "sweep.html").string();
  RunResult report = Ctl("report " + sweep.id() + " -o " + html);
  ASSERT_EQ(report.exit_code, 0) << report.Describe();
  const std::string page = testing::ReadFile(html);
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find(sweep.children(2).job_id() + " (best)"), std::string::npos);
  EXPECT_NE(page.find("<svg"), std::string::npos);
  EXPECT_EQ(Ctl("report " + sweep.id() + " -o " + html).exit_code, 1);  // exists: --force
  RunResult job_report =
      Ctl("--json report " + sweep.children(0).job_id() + " -o " + (dir_ / "job.html").string());
  ASSERT_EQ(job_report.exit_code, 0) << job_report.Describe();
  EXPECT_NE(job_report.out.find("\"kind\": \"job\""), std::string::npos) << job_report.out;
  EXPECT_NE(testing::ReadFile(dir_ / "job.html").find("train and eval loss"), std::string::npos);

  // Every child carries its sweep and the sweep's name.
  RunResult job = Ctl("--json get " + sweep.children(0).job_id());
  v1::Job child;
  ASSERT_TRUE(testing::ParseJson(job.out, &child)) << job.Describe();
  EXPECT_EQ(child.sweep_id(), sweep.id());
  EXPECT_EQ(child.display_name(), "lam #0");
}

TEST_F(SweepIntegrationTest, ASweepWithARefusedChildIsRefusedWholeNamingTheChildAndTheField) {
  RunResult r = Ctl(SubmitArgs() + " --grid lora.r=8,-1");
  EXPECT_EQ(r.exit_code, 4) << r.Describe();
  // The child, its values and the field; then the field violation the server attached.
  EXPECT_NE(r.err.find("submitting the sweep: children[1] (lora.r=-1): lora.r\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("  children[1].lora.r: must be in [1, 4096], got -1"), std::string::npos)
      << r.err;
  RunResult list = Ctl("--json sweep list");
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  v1::ListSweepsResponse sweeps;
  ASSERT_TRUE(testing::ParseJson(list.out, &sweeps)) << list.out;
  EXPECT_EQ(sweeps.sweeps_size(), 0);
  RunResult jobs = Ctl("--json list");
  v1::ListJobsResponse all;
  ASSERT_TRUE(testing::ParseJson(jobs.out, &all)) << jobs.out;
  EXPECT_EQ(all.jobs_size(), 0);
  // An unknown field names the axis; both kinds of axis at once is a usage error.
  RunResult unknown = Ctl(SubmitArgs() + " --grid lora.rank=4");
  EXPECT_EQ(unknown.exit_code, 4) << unknown.Describe();
  EXPECT_NE(unknown.err.find("spec.axes[0].field"), std::string::npos) << unknown.err;
  EXPECT_EQ(Ctl(SubmitArgs() + " --grid seed=1 --list seed=2").exit_code, 2);
}

TEST_F(SweepIntegrationTest, CancelStopsEveryChildAndWatchSaysCancelled) {
  RunResult submitted = Ctl(SubmitArgs() + " --list seed=1,2,3 --max-concurrency 1 --json");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.Describe();
  v1::Sweep sweep;
  ASSERT_TRUE(testing::ParseJson(submitted.out, &sweep)) << submitted.out;
  std::vector<v1::Lease> running = Lease(3);
  ASSERT_EQ(running.size(), 1u);
  RunResult cancel = Ctl("sweep cancel " + sweep.id());
  ASSERT_EQ(cancel.exit_code, 0) << cancel.Describe();
  EXPECT_NE(cancel.out.find("is cancelling"), std::string::npos) << cancel.out;
  v1::Sweep cancelling = Get(sweep.id());
  EXPECT_EQ(cancelling.state(), v1::SWEEP_CANCELLING);
  EXPECT_EQ(cancelling.children(1).state(), v1::CANCELLED);
  // The worker hears of it and stops; nothing else is leased.
  v1::HeartbeatResponse resp;
  ASSERT_TRUE(worker_->Heartbeat(3, {FakeWorker::Report(running[0], 1)}, &resp).ok());
  ASSERT_EQ(resp.cancel_job_ids_size(), 1);
  EXPECT_EQ(resp.leases_size(), 0);
  ASSERT_TRUE(worker_->Complete(running[0], v1::CANCELLED).ok());
  RunResult watch = Ctl("sweep watch " + sweep.id());
  EXPECT_EQ(watch.exit_code, 8) << watch.Describe();
  EXPECT_EQ(Get(sweep.id()).state(), v1::SWEEP_CANCELLED);
}

}  // namespace
}  // namespace peftd
