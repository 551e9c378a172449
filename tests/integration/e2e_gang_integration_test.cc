// Gangs through the real binaries (issue 13): `peftd --local-workers 2` (two 1-slot workers) and
// `peftctl submit --workers 2`. A 2-rank gang of batch b trains the adapter a 1-worker job of
// batch 2b trains; kill -9 of rank 1's worker fences the attempt and the gang resumes from its
// checkpoint; a rank that never arrives times the attempt out and requeues it; two gangs on two
// workers both finish; cancel stops every rank; a gang wider than the cluster says why it waits.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/peftd_process.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::BackgroundProcess;
using testing::kExamples;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunResult;

std::vector<std::string> ServerArgs(const fs::path& dir, int local_workers,
                                    const std::string& rendezvous_timeout = "60s") {
  return {"--model-root=" + (dir / "models").string(),
          absl::StrCat("--local-workers=", local_workers),
          "--heartbeat-interval=200ms",
          "--lease-timeout=5s",
          "--restart-grace=6s",
          "--rendezvous-timeout=" + rendezvous_timeout};
}

fs::path WriteJobFile(const fs::path& dir, const std::string& name, int64_t steps, int batch,
                      int64_t checkpoint_every = 0) {
  const fs::path path = dir / (name + ".json");
  std::ofstream(path) << absl::StrCat(
      "{\"base_model\": \"tiny-llama\", \"method\": \"LORA\", \"lora\": {\"r\": 4},"
      " \"training_dataset_id\": \"",
      kExamples, "/tiny-lm-train.jsonl\", \"max_steps\": ", steps, ", \"batch_size\": ", batch,
      ", \"max_seq_len\": 48, \"learning_rate\": 0.003, \"seed\": 7,"
      " \"checkpoint_interval_steps\": ",
      checkpoint_every > 0 ? checkpoint_every : steps, ", \"num_threads\": 1}");
  return path;
}

std::string Submit(const PeftdProcess& server, const fs::path& job_file,
                   std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--json", "submit", "-f", job_file.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const RunResult r = Peftctl(server.address(), args);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  v1::Job job;
  EXPECT_TRUE(testing::ParseJson(r.out, &job)) << r.Describe();
  return job.id();
}

v1::Job Get(const PeftdProcess& server, const std::string& id) {
  auto stub = v1::JobService::NewStub(server.Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  const grpc::Status st = stub->GetJob(&ctx, req, &job);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return job;
}

std::string Events(const PeftdProcess& server, const std::string& id) {
  const RunResult r = Peftctl(server.address(), {"events", id});
  return r.out + r.err;
}

bool WaitForState(const PeftdProcess& server, const std::string& id, v1::JobState state,
                  std::chrono::seconds limit) {
  return testing::WaitUntil(
      [&] {
        const v1::JobState s = Get(server, id).state();
        return s == state || (state != v1::FAILED && s == v1::FAILED);
      },
      limit);
}

// The pid of local worker `worker_id` (its command line has --worker-id ID).
pid_t LocalWorkerPid(const PeftdProcess& server, const std::string& worker_id) {
  for (pid_t pid : testing::ChildrenNamed(server.pid(), "peftd-worker")) {
    std::string cmdline = testing::ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (absl::StrContains(cmdline, absl::StrCat("--worker-id ", worker_id, " "))) return pid;
  }
  return -1;
}

fs::path Download(const PeftdProcess& server, const std::string& id, const fs::path& out) {
  const RunResult r = Peftctl(server.address(), {"download", id, "-o", out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  return out / "adapter_model.safetensors";
}

class E2eGang : public ::testing::Test {
 protected:
  void StartServer(const std::string& name, int local_workers,
                   const std::string& rendezvous_timeout = "60s") {
    dir_ = testing::FreshTestDir(name);
    server_ = std::make_unique<PeftdProcess>((dir_ / "data").string(),
                                             ServerArgs(dir_, local_workers, rendezvous_timeout));
    server_->set_log_file((dir_ / "peftd.log").string());
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }
  void TearDown() override {
    if (server_) EXPECT_EQ(server_->Terminate(), 0);
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string Log() { return testing::ReadFile(dir_ / "peftd.log"); }

  fs::path dir_;
  std::unique_ptr<PeftdProcess> server_;
};

TEST_F(E2eGang, TwoRanksOfBatchBTrainTheAdapterOfOneWorkerOfBatch2B) {
  StartServer("gang_equal", 2);
  // The reference first (it also writes the built-in model both ranks load).
  const std::string single = Submit(*server_, WriteJobFile(dir_, "single", 12, 8));
  ASSERT_TRUE(WaitForState(*server_, single, v1::SUCCEEDED, std::chrono::seconds(180)))
      << Events(*server_, single) << Log();
  const std::string gang = Submit(*server_, WriteJobFile(dir_, "gang", 12, 4), {"--workers", "2"});
  const RunResult shown = Peftctl(server_->address(), {"get", gang});
  EXPECT_TRUE(absl::StrContains(shown.out, "2 ranks (global batch 4 x 1 x 2 = 8 sequences)"))
      << shown.Describe();
  ASSERT_TRUE(WaitForState(*server_, gang, v1::SUCCEEDED, std::chrono::seconds(180)))
      << Events(*server_, gang) << Log();
  const v1::Job job = Get(*server_, gang);
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.error().message() << Events(*server_, gang);
  EXPECT_EQ(job.attempt(), 1) << Events(*server_, gang);
  EXPECT_EQ(job.global_batch_size(), 8);
  const std::string events = Events(*server_, gang);
  EXPECT_TRUE(absl::StrContains(events, "leased to a gang of 2 (rank 0 on local-")) << events;
  EXPECT_TRUE(absl::StrContains(events, "rank 0 opened the rendezvous at 127.0.0.1:")) << events;
  EXPECT_TRUE(absl::StrContains(events, "all 2 ranks met")) << events;

  auto a = safetensors::File::Open(Download(*server_, single, dir_ / "single-adapter").string());
  auto b = safetensors::File::Open(Download(*server_, gang, dir_ / "gang-adapter").string());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->names(), b->names());
  for (const std::string& name : a->names()) {
    auto x = a->Get(name);
    auto y = b->Get(name);
    ASSERT_TRUE(x.ok() && y.ok()) << name;
    ASSERT_EQ(x->shape, y->shape) << name;
    ASSERT_EQ(x->dtype, safetensors::Dtype::kF32) << name;
    const float* xv = reinterpret_cast<const float*>(x->data);
    const float* yv = reinterpret_cast<const float*>(y->data);
    double scale = 1e-3, diff = 0;
    for (int64_t i = 0; i < x->numel(); ++i) {
      scale = std::max(scale, std::abs(static_cast<double>(xv[i])));
      diff = std::max(diff, std::abs(static_cast<double>(xv[i]) - yv[i]));
    }
    // The tolerance of tests/worker_run/train_data_parallel_integration_test.cc: fp32 sums of b
    // and 2b rows round differently.
    EXPECT_LE(diff, 1e-4 * scale) << name;
  }
}

TEST_F(E2eGang, KillDashNineOfRankOnesWorkerRequeuesTheGangWhichResumesFromItsCheckpoint) {
  StartServer("gang_kill", 2);
  constexpr int64_t kSteps = 400, kEvery = 50;
  const std::string gang =
      Submit(*server_, WriteJobFile(dir_, "gang", kSteps, 4, kEvery), {"--workers", "2"});
  std::string rank1;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        const v1::Job job = Get(*server_, gang);
        if (job.checkpoints_size() == 0 || job.rank_worker_ids_size() != 2) return false;
        rank1 = job.rank_worker_ids(1);
        return job.progress().step() > job.checkpoints(0).step() &&
               job.progress().step() < kSteps - kEvery;
      },
      std::chrono::seconds(180)))
      << Events(*server_, gang) << Log();
  const pid_t pid = LocalWorkerPid(*server_, rank1);
  ASSERT_GT(pid, 0) << rank1;
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForState(*server_, gang, v1::SUCCEEDED, std::chrono::seconds(240)))
      << Events(*server_, gang) << Log();
  const v1::Job job = Get(*server_, gang);
  EXPECT_EQ(job.attempt(), 2) << Events(*server_, gang);
  EXPECT_EQ(job.progress().step(), kSteps);
  const std::string events = Events(*server_, gang);
  EXPECT_TRUE(absl::StrContains(events, absl::StrCat("worker ", rank1, " of rank 1")) ||
              absl::StrContains(events, "rank 0 on worker"))
      << events;
  EXPECT_TRUE(absl::StrContains(events, "attempt 2 leased to a gang of 2")) << events;
  EXPECT_TRUE(absl::StrContains(events, "starting from the checkpoint of step")) << events;
}

TEST_F(E2eGang, ARankThatNeverArrivesTimesTheAttemptOutAndItIsRequeued) {
  // Remote workers that advertise an address nobody can reach (TEST-NET-1): rank 1 never meets
  // rank 0, whichever worker rank 0 lands on.
  StartServer("gang_never", 0, "3s");
  BackgroundProcess w1, w2;
  for (auto [proc, id] : {std::pair<BackgroundProcess*, std::string>{&w1, "w1"}, {&w2, "w2"}}) {
    proc->Start({testing::kWorker, "--server", server_->address(), "--worker-id", id,
                 "--model-root", (dir_ / "models").string(), "--cache-dir",
                 (dir_ / ("cache-" + id)).string(), "--advertise-host", "192.0.2.1"},
                {{"PEFTD_TOKEN", "\x01"}}, (dir_ / (id + ".log")).string());
  }
  const std::string gang = Submit(*server_, WriteJobFile(dir_, "gang", 10, 4), {"--workers", "2"});
  ASSERT_TRUE(testing::WaitUntil([&] { return Get(*server_, gang).attempt() >= 2; },
                                 std::chrono::seconds(120)))
      << Events(*server_, gang) << Log() << testing::ReadFile(dir_ / "w1.log");
  const std::string events = Events(*server_, gang);
  EXPECT_TRUE(absl::StrContains(events, "rendezvous did not complete within 3s") ||
              absl::StrContains(events, "not every rank arrived"))
      << events;
  EXPECT_TRUE(absl::StrContains(events, "attempt 1 lost")) << events;
  EXPECT_EQ(Peftctl(server_->address(), {"cancel", gang}).exit_code, 0);
  ASSERT_TRUE(WaitForState(*server_, gang, v1::CANCELLED, std::chrono::seconds(60)))
      << Events(*server_, gang);
}

TEST_F(E2eGang, TwoGangsOnTwoOneSlotWorkersBothFinish) {
  StartServer("gang_two", 2);
  const fs::path file = WriteJobFile(dir_, "gang", 10, 4);
  const std::string a = Submit(*server_, file, {"--workers", "2"});
  const std::string b = Submit(*server_, file, {"--workers", "2"});
  ASSERT_TRUE(WaitForState(*server_, a, v1::SUCCEEDED, std::chrono::seconds(240)))
      << Events(*server_, a) << Log();
  ASSERT_TRUE(WaitForState(*server_, b, v1::SUCCEEDED, std::chrono::seconds(240)))
      << Events(*server_, b) << Log();
}

TEST_F(E2eGang, CancelStopsEveryRankAndAGangWiderThanTheClusterSaysWhyItWaits) {
  StartServer("gang_cancel", 2);
  const std::string wide = Submit(*server_, WriteJobFile(dir_, "wide", 10, 4), {"--workers", "3"});
  const std::string gang =
      Submit(*server_, WriteJobFile(dir_, "long", 100000, 4, 1000), {"--workers", "2"});
  ASSERT_TRUE(testing::WaitUntil([&] { return Get(*server_, gang).progress().step() > 2; },
                                 std::chrono::seconds(180)))
      << Events(*server_, gang) << Log();
  const RunResult shown = Peftctl(server_->address(), {"get", wide});
  EXPECT_TRUE(absl::StrContains(shown.out,
                                "needs 3 slots on distinct workers; the server has 2 "
                                "live workers"))
      << shown.Describe();
  EXPECT_TRUE(absl::StrContains(shown.out, "rank 1:") == false) << shown.Describe();
  const RunResult running = Peftctl(server_->address(), {"get", gang});
  EXPECT_TRUE(absl::StrContains(running.out, "rank 1:")) << running.Describe();

  EXPECT_EQ(Peftctl(server_->address(), {"cancel", gang}).exit_code, 0);
  ASSERT_TRUE(WaitForState(*server_, gang, v1::CANCELLED, std::chrono::seconds(60)))
      << Events(*server_, gang);
  // Both ranks stopped and gave their slots back: another gang runs on the same two workers.
  EXPECT_EQ(Peftctl(server_->address(), {"cancel", wide}).exit_code, 0);
  const std::string next = Submit(*server_, WriteJobFile(dir_, "next", 6, 4), {"--workers", "2"});
  ASSERT_TRUE(WaitForState(*server_, next, v1::SUCCEEDED, std::chrono::seconds(180)))
      << Events(*server_, next) << Log();
}

}  // namespace
}  // namespace peftd
