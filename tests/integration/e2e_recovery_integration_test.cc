// Crashes with the real binaries: a `peftd-worker` killed with -9 in the middle of training (the
// job resumes as attempt 2 from its checkpoint), `peftd` killed with -9 and restarted on the same
// data dir while jobs are queued and running (every job is kept, the queue drains), and SIGTERM
// with connected streaming clients (the server exits promptly, not after --shutdown-grace).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
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

// Recovery needs a short lease and heartbeat; workers come from peftd --local-workers. 5 s, not
// less: with the other tests running beside it on 2 cores, a 2 s lease expired under live workers.
std::vector<std::string> ServerArgs(const fs::path& dir, int local_workers) {
  return {"--model-root=" + (dir / "models").string(),
          absl::StrCat("--local-workers=", local_workers), "--heartbeat-interval=200ms",
          "--lease-timeout=5s", "--restart-grace=6s"};
}

// A job file for `peftctl submit -f`: one CPU thread (fast and steady on a busy 2-core machine),
// short sequences, a checkpoint every `checkpoint_every` steps.
fs::path WriteJobFile(const fs::path& dir, int64_t steps, int64_t checkpoint_every) {
  const fs::path path = dir / absl::StrCat("job-", steps, "-", checkpoint_every, ".json");
  std::ofstream(path) << absl::StrCat(
      "{\"base_model\": \"tiny-llama\", \"method\": \"LORA\", \"lora\": {\"r\": 4},"
      " \"training_dataset_id\": \"",
      kExamples, "/tiny-lm-train.jsonl\", \"max_steps\": ", steps,
      ", \"batch_size\": 4, \"max_seq_len\": 48, \"learning_rate\": 0.003,"
      " \"checkpoint_interval_steps\": ",
      checkpoint_every, ", \"num_threads\": 1}");
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

std::vector<v1::JobEvent> Events(const PeftdProcess& server, const std::string& id) {
  auto stub = v1::JobService::NewStub(server.Channel());
  std::vector<v1::JobEvent> all;
  int64_t after = 0;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ListJobEventsRequest req;
    req.set_job_id(id);
    req.set_after_event_id(after);
    req.set_page_size(500);
    v1::ListJobEventsResponse resp;
    const grpc::Status st = stub->ListJobEvents(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (!st.ok() || resp.events().empty()) break;
    for (const auto& e : resp.events()) all.push_back(e);
    after = all.back().id();
  }
  return all;
}

std::string Dump(const std::vector<v1::JobEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    absl::StrAppend(&out, e.id(), " ", v1::JobState_Name(e.state()), " ", e.message(), "\n");
  }
  return out;
}

// The number after `prefix` in `text`, -1 when absent.
int64_t NumberAfter(const std::string& text, const std::string& prefix) {
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return -1;
  const size_t begin = at + prefix.size();
  size_t end = begin;
  while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
  int64_t n = -1;
  return absl::SimpleAtoi(text.substr(begin, end - begin), &n) ? n : -1;
}

bool WaitForState(const PeftdProcess& server, const std::string& id, v1::JobState state,
                  std::chrono::seconds limit) {
  return testing::WaitUntil(
      [&] {
        const v1::Job job = Get(server, id);
        return job.state() == state || (state != v1::FAILED && job.state() == v1::FAILED);
      },
      limit);
}

TEST(E2e, AWorkerKilledDashNineMidTrainingResumesAsAttempt2FromItsCheckpoint) {
  const fs::path dir = testing::FreshTestDir("kill_worker");
  PeftdProcess server((dir / "data").string(), ServerArgs(dir, 1));
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  // Checkpoints far enough apart that several heartbeats (200 ms) land between two of them: on
  // the tiny model a step takes a few milliseconds.
  constexpr int64_t kSteps = 600, kEvery = 150;
  const std::string id = Submit(server, WriteJobFile(dir, kSteps, kEvery));
  ASSERT_FALSE(id.empty());

  // Once a checkpoint is recorded and training goes on past it, kill the worker without warning.
  // TRAINING, not CHECKPOINTING: the worker reports a step's progress just before uploading its
  // checkpoint, so a CHECKPOINTING step past the newest checkpoint is the next one arriving.
  int64_t checkpoint_step = 0;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        const v1::Job job = Get(server, id);
        if (job.checkpoints_size() == 0) return false;
        checkpoint_step = job.checkpoints(job.checkpoints_size() - 1).step();
        return job.phase() == v1::TRAINING && job.progress().step() > checkpoint_step &&
               job.progress().step() < kSteps - kEvery;
      },
      std::chrono::seconds(90)))
      << Dump(Events(server, id)) << testing::ReadFile(dir / "peftd.log");
  const std::vector<pid_t> workers = testing::ChildrenNamed(server.pid(), "peftd-worker");
  ASSERT_EQ(workers.size(), 1u) << testing::ReadFile(dir / "peftd.log");
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);

  // The supervisor restarts the worker; the job comes back as attempt 2 and finishes.
  ASSERT_TRUE(WaitForState(server, id, v1::SUCCEEDED, std::chrono::seconds(100)))
      << Dump(Events(server, id)) << testing::ReadFile(dir / "peftd.log");
  const v1::Job job = Get(server, id);
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.error().message();
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.progress().step(), kSteps);
  const std::string log = testing::ReadFile(dir / "peftd.log");
  EXPECT_TRUE(absl::StrContains(log, "ended with signal 9")) << log;

  // The event log: attempt 1 lost, attempt 2 leased from the newest checkpoint of attempt 1, the
  // trainer resumed at that step, and no progress of attempt 2 is below it.
  const std::vector<v1::JobEvent> events = Events(server, id);
  const std::string dump = Dump(events);
  size_t lost = events.size(), leased = events.size(), resumed = events.size();
  for (size_t i = 0; i < events.size(); ++i) {
    const std::string& m = events[i].message();
    if (lost == events.size() && absl::StrContains(m, "attempt 1 lost")) lost = i;
    if (leased == events.size() && absl::StartsWith(m, "attempt 2 leased")) leased = i;
    if (resumed == events.size() && absl::StartsWith(m, "resumed from step")) resumed = i;
  }
  ASSERT_LT(lost, events.size()) << dump;
  ASSERT_LT(leased, events.size()) << dump;
  ASSERT_LT(resumed, events.size()) << dump;
  EXPECT_LT(lost, leased);
  EXPECT_LT(leased, resumed);
  const int64_t resume_step = NumberAfter(events[leased].message(), "from the checkpoint of step ");
  EXPECT_GE(resume_step, checkpoint_step) << dump;
  EXPECT_EQ(resume_step % kEvery, 0) << dump;
  EXPECT_EQ(NumberAfter(events[resumed].message(), "resumed from step "), resume_step) << dump;
  int64_t max_before = 0, min_after = kSteps + 1;
  for (size_t i = 0; i < events.size(); ++i) {
    if (!events[i].has_progress() || events[i].progress().total_steps() == 0) continue;
    const int64_t step = events[i].progress().step();
    if (i < lost) max_before = std::max(max_before, step);
    if (i > leased) min_after = std::min(min_after, step);
  }
  EXPECT_GT(max_before, resume_step) << "attempt 1 trained past its checkpoint\n" << dump;
  EXPECT_GE(min_after, resume_step) << "attempt 2 redid steps before its checkpoint\n" << dump;
  EXPECT_LE(min_after, kSteps) << "attempt 2 reported no progress\n" << dump;
  // Checkpoints of both attempts; attempt 2's come after the step it resumed from.
  std::set<int> attempts;
  for (const auto& cp : job.checkpoints()) {
    attempts.insert(cp.attempt());
    if (cp.attempt() == 2) EXPECT_GT(cp.step(), resume_step);
  }
  EXPECT_EQ(attempts, (std::set<int>{1, 2}));
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

TEST(E2e, PeftdKilledDashNineAndRestartedKeepsEveryJobAndDrainsTheQueue) {
  const fs::path dir = testing::FreshTestDir("kill_server");
  PeftdProcess server((dir / "data").string(), ServerArgs(dir, 1));
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const fs::path job_file = WriteJobFile(dir, 40, 5);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i)
    ids.push_back(Submit(server, job_file, {"--name", "j" + std::to_string(i)}));

  // Kill peftd while the first job trains past a checkpoint and the others wait.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        const v1::Job job = Get(server, ids[0]);
        return job.checkpoints_size() > 0 && job.progress().step() < 35;
      },
      std::chrono::seconds(90)))
      << Dump(Events(server, ids[0])) << testing::ReadFile(dir / "peftd.log");
  server.Kill();

  ASSERT_TRUE(server.Start(&error)) << error << testing::ReadFile(dir / "peftd.log");
  auto stub = v1::JobService::NewStub(server.Channel());
  std::set<std::string> listed;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ListJobsResponse resp;
    ASSERT_TRUE(stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
    for (const auto& j : resp.jobs()) listed.insert(j.id());
  }
  EXPECT_EQ(listed, std::set<std::string>(ids.begin(), ids.end()));

  for (const std::string& id : ids) {
    EXPECT_TRUE(WaitForState(server, id, v1::SUCCEEDED, std::chrono::seconds(100)))
        << id << "\n"
        << Dump(Events(server, id)) << testing::ReadFile(dir / "peftd.log");
  }
  for (const std::string& id : ids) {
    const v1::Job job = Get(server, id);
    EXPECT_EQ(job.state(), v1::SUCCEEDED) << id << ": " << job.error().message();
    EXPECT_EQ(job.progress().step(), 40) << id;
    EXPECT_FALSE(job.adapter_sha256().empty()) << id;
  }
  // The job that was training when peftd died went on from its checkpoint as attempt 2.
  const v1::Job first = Get(server, ids[0]);
  EXPECT_EQ(first.attempt(), 2);
  const std::string dump = Dump(Events(server, ids[0]));
  EXPECT_TRUE(absl::StrContains(dump, "resumed from step")) << dump;
  EXPECT_FALSE(absl::StrContains(Dump(Events(server, ids[3])), "attempt 2"))
      << "never leased before the crash";
  EXPECT_EQ(server.Terminate(), 0);
  fs::remove_all(dir);
}

TEST(E2e, SigtermWithStreamingClientsConnectedExitsWithoutWaitingOutTheGrace) {
  const fs::path dir = testing::FreshTestDir("sigterm");
  std::vector<std::string> args = ServerArgs(dir, 1);
  args.push_back("--shutdown-grace=60s");
  PeftdProcess server((dir / "data").string(), args);
  server.set_log_file((dir / "peftd.log").string());
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  const std::string id = Submit(server, WriteJobFile(dir, 100000, 1000));
  ASSERT_TRUE(testing::WaitUntil([&] { return Get(server, id).progress().step() > 0; },
                                 std::chrono::seconds(90)))
      << testing::ReadFile(dir / "peftd.log");

  // A client following the job, and one that started a dataset upload and stalls.
  BackgroundProcess watcher;
  watcher.Start(
      {testing::kPeftctl, "--server", server.address(), "watch", id, "--reconnect-timeout", "1"},
      {}, (dir / "watch.log").string());
  auto stub = v1::JobService::NewStub(server.Channel());
  grpc::ClientContext upload_ctx;
  v1::Dataset uploaded;
  auto upload = stub->UploadDataset(&upload_ctx, &uploaded);
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_filename("stalled.jsonl");
  header.mutable_header()->set_size_bytes(1 << 20);
  ASSERT_TRUE(upload->Write(header));
  v1::UploadDatasetRequest chunk;
  chunk.set_chunk("{\"text\": \"a first line\"}\n");
  ASSERT_TRUE(upload->Write(chunk));
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return absl::StrContains(testing::ReadFile(dir / "watch.log"), "step"); },
      std::chrono::seconds(30)))
      << testing::ReadFile(dir / "watch.log");

  // Terminate() gives up (and kills) after 20 s, well under the 60 s grace: a server that waited
  // for those streams or for the grace would fail here.
  EXPECT_EQ(server.Terminate(), 0) << testing::ReadFile(dir / "peftd.log");
  const grpc::Status upload_status = upload->Finish();
  // Cut by the server: UNAVAILABLE, which clients retry.
  EXPECT_EQ(upload_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << upload_status.error_message();
  const std::string log = testing::ReadFile(dir / "peftd.log");
  EXPECT_TRUE(absl::StrContains(log, "stopped: exit code 0")) << "the worker stopped in order\n"
                                                              << log;
  // The job is kept for the next start (its lease waits for the worker to come back).
  ASSERT_TRUE(server.Start(&error)) << error;
  EXPECT_NE(Get(server, id).state(), v1::FAILED);
  server.Kill();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
