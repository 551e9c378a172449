// Scheduler behaviour that scenarios cannot express: concurrency, waiting and what observers see.
#include "server/scheduler.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

class RecordingObserver : public SchedulerObserver {
 public:
  void JobSubmitted(v1::Method m) override { ++submitted; }
  void JobFinished(v1::Method m, v1::JobState s) override { finished.push_back(s); }
  void JobsByState(const std::map<v1::JobState, int64_t>& c) override { counts = c; }
  void Workers(const std::map<std::string, int64_t>& c) override { workers = c; }
  void QueueWait(double s) override { queue_waits.push_back(s); }
  void JobRemoved(const std::string& id) override { removed.push_back(id); }
  int submitted = 0;
  std::vector<v1::JobState> finished;
  std::map<v1::JobState, int64_t> counts;
  std::map<std::string, int64_t> workers;
  std::vector<double> queue_waits;
  std::vector<std::string> removed;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("peftd_sched_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name(), getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
    // A short busy timeout: the tests that lock the database wait this long per refused write.
    store_ = std::move(*storage::JobStore::Open((dir_ / "jobs.db").string(),
                                                storage::kSchemaVersion, absl::Milliseconds(100)));
    blobs_ = std::make_unique<storage::BlobStore>(
        std::move(*storage::BlobStore::Open((dir_ / "blobs").string())));
    SchedulerOptions o;
    o.model_root = (dir_ / "models").string();
    scheduler_ = std::move(*Scheduler::Create(store_.get(), blobs_.get(), &clock_, o, &observer_));
    v1::Dataset ds;
    ds.set_id("ds-1");
    ds.set_sha256(*blobs_->Put("{\"text\": \"x\"}\n"));
    ds.set_format("text");
    ASSERT_TRUE(scheduler_->RecordDataset(ds).ok());
  }
  void TearDown() override {
    scheduler_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  static v1::CreateJobRequest Request(const std::string& request_id) {
    v1::CreateJobRequest r;
    r.set_request_id(request_id);
    r.mutable_spec()->set_base_model("tiny");
    r.mutable_spec()->set_method(v1::LORA);
    r.mutable_spec()->set_training_dataset_id("ds-1");
    return r;
  }

  fs::path dir_;
  FakeClock clock_;
  RecordingObserver observer_;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, ConcurrentDuplicateSubmitsCreateExactlyOneJobPerRequestId) {
  constexpr int kThreads = 50, kIds = 5;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::map<int, std::set<std::string>> ids;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIds; ++i) {
        const int rid = (i + t) % kIds;
        auto job = scheduler_->CreateJob(Request(absl::StrCat("r", rid)));
        std::lock_guard<std::mutex> lock(mu);
        ids[rid].insert(job.ok() ? job->id() : job.status().ToString());
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int rid = 0; rid < kIds; ++rid) EXPECT_EQ(ids[rid].size(), 1u) << "request id r" << rid;
  EXPECT_EQ(observer_.submitted, kIds);
  EXPECT_EQ(observer_.counts[v1::QUEUED], kIds);
}

TEST_F(SchedulerTest, WaitForEventsWakesWhenTheJobChanges) {
  auto job = scheduler_->CreateJob(Request(""));
  ASSERT_TRUE(job.ok());
  auto events = scheduler_->ListJobEvents(job->id(), 0, 100);
  ASSERT_EQ(events->size(), 1u);
  const int64_t last = events->back().id();
  std::atomic<bool> woke{false};
  // Without a wake-up this waits for an hour and the test times out.
  std::thread waiter([&] {
    scheduler_->WaitForEvents(job->id(), last, absl::Hours(1));
    woke = true;
  });
  while (!woke) {
    ASSERT_TRUE(scheduler_->CancelJob(job->id()).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  waiter.join();
  EXPECT_EQ(scheduler_->ListJobEvents(job->id(), last, 100)->size(), 1u);
  // A final job with nothing new: returns at once.
  scheduler_->WaitForEvents(job->id(), last + 1000, absl::Hours(1));
}

TEST_F(SchedulerTest, ObserversSeeCountsWorkersQueueWaitsAndTheEnd) {
  auto job = scheduler_->CreateJob(Request(""));
  ASSERT_TRUE(job.ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  ASSERT_TRUE(scheduler_->Register(reg).ok());
  EXPECT_EQ(observer_.workers["idle"], 1);
  clock_.Advance(absl::Seconds(3));
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_free_slots(1);
  auto resp = scheduler_->Heartbeat(hb);
  ASSERT_EQ(resp->leases_size(), 1);
  ASSERT_EQ(observer_.queue_waits.size(), 1u);
  EXPECT_DOUBLE_EQ(observer_.queue_waits[0], 3.0);
  EXPECT_EQ(observer_.workers["busy"], 1);
  EXPECT_EQ(observer_.counts[v1::RUNNING], 1);
  // Updates that keep the state (reports, records) leave the counts alone.
  v1::HeartbeatRequest report;
  report.set_worker_id("w1");
  auto* r = report.add_reports();
  r->set_job_id(job->id());
  r->set_attempt(1);
  r->mutable_progress()->set_step(3);
  ASSERT_EQ(scheduler_->Heartbeat(report)->drop_job_ids_size(), 0);
  ASSERT_TRUE(scheduler_->RecordCheckpoint(job->id(), 1, 3, std::string(64, 'a'), 10).ok());
  ASSERT_TRUE(scheduler_->RecordAdapter(job->id(), 1, false, std::string(64, 'b'), 10).ok());
  EXPECT_EQ(observer_.counts[v1::RUNNING], 1);
  EXPECT_EQ(observer_.counts[v1::QUEUED], 0);
  ASSERT_TRUE(scheduler_->CancelJob(job->id()).ok());
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(job->id());
  done.set_attempt(1);
  done.set_final_state(v1::CANCELLED);
  ASSERT_TRUE(scheduler_->CompleteJob(done).ok());
  EXPECT_EQ(observer_.counts[v1::CANCELLED], 1);
  EXPECT_EQ(observer_.counts[v1::RUNNING], 0);
  EXPECT_EQ(observer_.finished, std::vector<v1::JobState>{v1::CANCELLED});
  EXPECT_EQ(observer_.removed, std::vector<std::string>{job->id()});
  EXPECT_EQ(observer_.workers["idle"], 1);
  clock_.Advance(absl::Seconds(7));
  scheduler_->Tick();
  EXPECT_EQ(observer_.workers["lost"], 1);
}

// The checkpoint event is in phase CHECKPOINTING even when the last report said TRAINING, and a
// worker that flushes its report first gets the step's progress event before it.
TEST_F(SchedulerTest, CheckpointEventIsInPhaseCheckpointingAfterTheStepsProgress) {
  auto job = scheduler_->CreateJob(Request(""));
  ASSERT_TRUE(job.ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  ASSERT_TRUE(scheduler_->Register(reg).ok());
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_free_slots(1);
  ASSERT_EQ(scheduler_->Heartbeat(hb)->leases_size(), 1);
  auto report = [&](int64_t step, v1::JobPhase phase) {
    v1::HeartbeatRequest r;
    r.set_worker_id("w1");
    auto* p = r.add_reports();
    p->set_job_id(job->id());
    p->set_attempt(1);
    p->set_phase(phase);
    p->mutable_progress()->set_step(step);
    p->mutable_progress()->set_total_steps(100);
    ASSERT_EQ(scheduler_->Heartbeat(r)->drop_job_ids_size(), 0);
  };
  report(10, v1::TRAINING);
  // A worker that did not flush: the job's phase is still TRAINING from step 10.
  ASSERT_TRUE(scheduler_->RecordCheckpoint(job->id(), 1, 20, std::string(64, 'a'), 10).ok());
  // One that did: the report of step 40 in phase CHECKPOINTING, then the upload.
  report(40, v1::CHECKPOINTING);
  ASSERT_TRUE(scheduler_->RecordCheckpoint(job->id(), 1, 40, std::string(64, 'b'), 10).ok());
  auto events = scheduler_->ListJobEvents(job->id(), 0, 100);
  ASSERT_TRUE(events.ok());
  int progress_40 = -1, checkpoint_40 = -1;
  for (int i = 0; i < static_cast<int>(events->size()); ++i) {
    const v1::JobEvent& e = (*events)[i];
    if (e.message().rfind("checkpoint of step ", 0) == 0) {
      EXPECT_EQ(e.phase(), v1::CHECKPOINTING) << e.message();
      EXPECT_EQ(e.state(), v1::RUNNING) << e.message();
      if (e.message().rfind("checkpoint of step 40 ", 0) == 0) checkpoint_40 = i;
    }
    if (e.has_progress() && e.progress().step() == 40) {
      EXPECT_EQ(e.phase(), v1::CHECKPOINTING);
      progress_40 = i;
    }
  }
  ASSERT_GE(progress_40, 0);
  ASSERT_GE(checkpoint_40, 0);
  EXPECT_LT(progress_40, checkpoint_40);
  // The job's own phase is the worker's to report: the checkpoint does not change it.
  EXPECT_EQ(scheduler_->GetJob(job->id())->phase(), v1::CHECKPOINTING);
}

// A heartbeat can carry log lines of several phases: each keeps the phase it was logged in. The
// adapter's upload is in phase EXPORTING whatever the last report said.
TEST_F(SchedulerTest, EventsKeepThePhaseTheWorkerLoggedThemIn) {
  auto job = scheduler_->CreateJob(Request(""));
  ASSERT_TRUE(job.ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  ASSERT_TRUE(scheduler_->Register(reg).ok());
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_free_slots(1);
  ASSERT_EQ(scheduler_->Heartbeat(hb)->leases_size(), 1);
  v1::HeartbeatRequest r;
  r.set_worker_id("w1");
  auto* p = r.add_reports();
  p->set_job_id(job->id());
  p->set_attempt(1);
  p->set_phase(v1::TRAINING);
  auto* loaded = p->add_events();
  loaded->set_message("dataset loaded");
  loaded->set_phase(v1::LOADING_MODEL);
  p->add_events()->set_message("no phase given");
  ASSERT_EQ(scheduler_->Heartbeat(r)->drop_job_ids_size(), 0);
  ASSERT_TRUE(scheduler_->RecordAdapter(job->id(), 1, false, std::string(64, 'b'), 10).ok());
  auto events = scheduler_->ListJobEvents(job->id(), 0, 100);
  ASSERT_TRUE(events.ok());
  std::map<std::string, v1::JobPhase> phase;
  for (const v1::JobEvent& e : *events) {
    phase[e.message().substr(0, e.message().find(" ("))] = e.phase();
  }
  EXPECT_EQ(phase["dataset loaded"], v1::LOADING_MODEL);
  EXPECT_EQ(phase["no phase given"], v1::TRAINING);
  EXPECT_EQ(phase["adapter uploaded"], v1::EXPORTING);
}

// Holds SQLite's write lock from a second connection, as a busy or stuck writer would.
class WriteLock {
 public:
  explicit WriteLock(const fs::path& db) : db_(db.string(), SQLite::OPEN_READWRITE) {
    tx_.emplace(db_, SQLite::TransactionBehavior::IMMEDIATE);
  }
  void Release() { tx_.reset(); }  // rolled back, uncommitted

 private:
  SQLite::Database db_;
  std::optional<SQLite::Transaction> tx_;
};

TEST_F(SchedulerTest, AnExpiredLeaseWhoseWriteFailsIsRetriedAtTheNextTick) {
  auto job = scheduler_->CreateJob(Request(""));
  ASSERT_TRUE(job.ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  ASSERT_TRUE(scheduler_->Register(reg).ok());
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_free_slots(1);
  ASSERT_EQ(scheduler_->Heartbeat(hb)->leases_size(), 1);
  clock_.Advance(absl::Seconds(7));
  {
    WriteLock lock(dir_ / "jobs.db");
    scheduler_->Tick();  // the requeue cannot be written
    EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::RUNNING);
    clock_.Advance(absl::Seconds(30));
    scheduler_->Tick();  // nor can anything else: no lease expires while the store is stuck
    lock.Release();
  }
  // Writable again: the lease gets a full lease_timeout (the worker could not be heard), then
  // expires for good if the worker stays silent. Before the fix the lease was dropped from memory
  // at the failed write and the job stayed RUNNING with no lease forever.
  scheduler_->Tick();
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::RUNNING);
  clock_.Advance(absl::Seconds(7));
  scheduler_->Tick();
  auto after = scheduler_->GetJob(job->id());
  EXPECT_EQ(after->state(), v1::QUEUED);
  EXPECT_EQ(after->attempt(), 2);
  // And the job is leasable again.
  v1::RegisterRequest reg2;
  reg2.set_worker_id("w2");
  ASSERT_TRUE(scheduler_->Register(reg2).ok());
  hb.set_worker_id("w2");
  auto leased = scheduler_->Heartbeat(hb);
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_EQ(leased->leases_size(), 1);
  EXPECT_EQ(leased->leases(0).attempt(), 2);
}

TEST_F(SchedulerTest, ARegisterWhoseWriteFailsChangesNoLeaseAndCanBeRepeated) {
  auto job = scheduler_->CreateJob(Request(""));
  ASSERT_TRUE(job.ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  ASSERT_TRUE(scheduler_->Register(reg).ok());
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_free_slots(1);
  ASSERT_EQ(scheduler_->Heartbeat(hb)->leases_size(), 1);
  {
    WriteLock lock(dir_ / "jobs.db");
    EXPECT_FALSE(scheduler_->Register(reg).ok());  // w1 restarted without the job
    lock.Release();
  }
  EXPECT_EQ(scheduler_->GetJob(job->id())->state(), v1::RUNNING);
  ASSERT_TRUE(scheduler_->Register(reg).ok());  // its retry gives the job back
  auto after = scheduler_->GetJob(job->id());
  EXPECT_EQ(after->state(), v1::QUEUED);
  EXPECT_EQ(after->attempt(), 2);
}

TEST_F(SchedulerTest, AStateFilterOfAnyLengthIsOneConditionPerState) {
  ASSERT_TRUE(scheduler_->CreateJob(Request("")).ok());
  v1::ListJobsRequest req;
  for (int i = 0; i < 40000; ++i) req.add_states(i % 2 ? v1::QUEUED : v1::RUNNING);
  auto page = scheduler_->ListJobs(req);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->jobs_size(), 1);
  v1::ListJobsRequest labels;
  for (int i = 0; i < 65; ++i) (*labels.mutable_labels())[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(scheduler_->ListJobs(labels).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace peftd::server
