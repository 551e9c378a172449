// Gang leasing through the scheduler (issue 13) on a fake clock: all or nothing, the rendezvous
// address before the other ranks' leases, fencing of the whole attempt, no deadlock, reasons.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "server/scheduler.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class SchedulerGangTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("peftd_gang_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name(), getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
    store_ = std::move(*storage::JobStore::Open((dir_ / "jobs.db").string()));
    blobs_ = std::make_unique<storage::BlobStore>(
        std::move(*storage::BlobStore::Open((dir_ / "blobs").string())));
    SchedulerOptions o;
    o.model_root = (dir_ / "models").string();
    o.lease_timeout = absl::Seconds(6);
    o.rendezvous_timeout = absl::Seconds(10);
    int next = 0;
    o.new_job_id = [next]() mutable { return absl::StrCat("job-", ++next); };
    scheduler_ = std::move(*Scheduler::Create(store_.get(), blobs_.get(), &clock_, o));
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

  std::string Submit(int workers) {
    v1::CreateJobRequest r;
    r.mutable_spec()->set_base_model("tiny");
    r.mutable_spec()->set_method(v1::LORA);
    r.mutable_spec()->set_training_dataset_id("ds-1");
    r.mutable_spec()->set_workers(workers);
    r.mutable_spec()->set_batch_size(2);
    absl::StatusOr<v1::Job> job = scheduler_->CreateJob(r);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }
  void Register(const std::string& id) {
    v1::RegisterRequest reg;
    reg.set_worker_id(id);
    ASSERT_TRUE(scheduler_->Register(reg).ok());
  }
  // A heartbeat of `worker` with `free` slots and the given reports.
  v1::HeartbeatResponse Beat(const std::string& worker, int free,
                             std::vector<v1::ProgressReport> reports = {}) {
    v1::HeartbeatRequest hb;
    hb.set_worker_id(worker);
    hb.set_free_slots(free);
    for (auto& r : reports) *hb.add_reports() = std::move(r);
    absl::StatusOr<v1::HeartbeatResponse> resp = scheduler_->Heartbeat(hb);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : v1::HeartbeatResponse();
  }
  static v1::ProgressReport Report(const std::string& job, int attempt, int rank,
                                   const std::string& address = "", bool joined = false) {
    v1::ProgressReport r;
    r.set_job_id(job);
    r.set_attempt(attempt);
    r.set_rank(rank);
    r.set_rendezvous_address(address);
    r.set_joined(joined);
    return r;
  }
  v1::Job Job(const std::string& id) { return *scheduler_->GetJob(id); }
  std::string AllEvents(const std::string& job) {
    std::string out;
    const auto events = scheduler_->ListJobEvents(job, 0, 1000);
    for (const auto& e : *events) absl::StrAppend(&out, e.message(), "\n");
    return out;
  }
  bool HasEvent(const std::string& job, const std::string& text) {
    const auto events = scheduler_->ListJobEvents(job, 0, 1000);
    for (const auto& e : *events) {
      if (e.message().find(text) != std::string::npos) return true;
    }
    return false;
  }
  // Places the 2-rank gang `job` on w1 (rank 0) and w2 (rank 1), through the rendezvous.
  void RunGang(const std::string& job, int attempt) {
    Beat("w2", 1);
    v1::HeartbeatResponse r0 = Beat("w1", 1);
    ASSERT_EQ(r0.leases_size(), 1);
    ASSERT_EQ(r0.leases(0).job_id(), job);
    Beat("w1", 0, {Report(job, attempt, 0, "127.0.0.1:4242")});
    v1::HeartbeatResponse r1 = Beat("w2", 1);
    ASSERT_EQ(r1.leases_size(), 1);
    ASSERT_EQ(r1.leases(0).rank(), 1);
  }

  fs::path dir_;
  FakeClock clock_;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerGangTest, SpecRecordsTheGlobalBatch) {
  const std::string id = Submit(2);
  EXPECT_EQ(Job(id).global_batch_size(), 4);  // 2 x 1 x 2
  EXPECT_EQ(Job(Submit(0)).spec().workers(), 1);
}

TEST_F(SchedulerGangTest, AllOrNothingThenRankZeroFirstAndTheOthersOnceTheAddressIsKnown) {
  Register("w1");
  Register("w2");
  const std::string gang = Submit(2);
  const std::string single = Submit(1);
  // w2 alone has a free slot: nothing is taken, and the single job behind the gang waits too
  // (the queue head reserves).
  EXPECT_EQ(Beat("w2", 1).leases_size(), 0);
  v1::Job job = Job(gang);
  EXPECT_EQ(job.state(), v1::QUEUED);
  EXPECT_EQ(job.waiting_reason(),
            "waiting for 2 free slots on distinct workers; 1 free on 1 live worker of 2");
  EXPECT_EQ(Job(single).state(), v1::QUEUED);

  // w1 frees a slot: the gang takes both at once; rank 0 goes to w1 now.
  v1::HeartbeatResponse r0 = Beat("w1", 1);
  ASSERT_EQ(r0.leases_size(), 1);
  const v1::Lease& lease0 = r0.leases(0);
  EXPECT_EQ(lease0.job_id(), gang);
  EXPECT_EQ(lease0.rank(), 0);
  EXPECT_EQ(lease0.world_size(), 2);
  EXPECT_EQ(lease0.rendezvous_key(), absl::StrCat(gang, "/attempt-1"));
  EXPECT_EQ(lease0.rendezvous_address(), "");
  EXPECT_EQ(lease0.rendezvous_timeout_ms(), 10000);
  job = Job(gang);
  EXPECT_EQ(job.state(), v1::RUNNING);
  EXPECT_EQ(job.worker_id(), "w1");
  EXPECT_EQ(std::vector<std::string>(job.rank_worker_ids().begin(), job.rank_worker_ids().end()),
            (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(job.waiting_reason(), "");

  // w2's slot is promised to rank 1: no lease before the address, and the single job does not
  // take it.
  EXPECT_EQ(Beat("w2", 1).leases_size(), 0);
  EXPECT_EQ(Job(single).state(), v1::QUEUED);

  Beat("w1", 0, {Report(gang, 1, 0, "10.0.0.1:29500")});
  v1::HeartbeatResponse r1 = Beat("w2", 1);
  ASSERT_EQ(r1.leases_size(), 1);
  EXPECT_EQ(r1.leases(0).rank(), 1);
  EXPECT_EQ(r1.leases(0).world_size(), 2);
  EXPECT_EQ(r1.leases(0).rendezvous_address(), "10.0.0.1:29500");
  EXPECT_EQ(r1.leases(0).rendezvous_key(), lease0.rendezvous_key());
  EXPECT_EQ(Job(single).state(), v1::QUEUED);

  // Per-rank figures: rank 1's reports update them and nothing else.
  v1::ProgressReport rank1 = Report(gang, 1, 1, "", true);
  rank1.set_allreduce_seconds(0.25);
  rank1.add_step_durations_seconds(0.5);
  rank1.mutable_progress()->set_step(99);
  EXPECT_EQ(Beat("w2", 0, {rank1}).drop_job_ids_size(), 0);
  v1::ProgressReport rank0 = Report(gang, 1, 0, "10.0.0.1:29500", true);
  rank0.mutable_progress()->set_step(3);
  rank0.set_allreduce_seconds(0.125);
  rank0.add_step_durations_seconds(0.75);
  Beat("w1", 0, {rank0});
  job = Job(gang);
  EXPECT_EQ(job.progress().step(), 3);
  ASSERT_EQ(job.progress().rank_allreduce_seconds_size(), 2);
  EXPECT_DOUBLE_EQ(job.progress().rank_allreduce_seconds(0), 0.125);
  EXPECT_DOUBLE_EQ(job.progress().rank_allreduce_seconds(1), 0.25);
  EXPECT_DOUBLE_EQ(job.progress().rank_step_seconds(0), 0.75);
  EXPECT_DOUBLE_EQ(job.progress().rank_step_seconds(1), 0.5);
  EXPECT_TRUE(HasEvent(gang, "all 2 ranks met")) << AllEvents(gang);
  // Met in time: the rendezvous bound no longer applies.
  clock_.Advance(absl::Seconds(5));
  Beat("w1", 0, {Report(gang, 1, 0)});
  Beat("w2", 0, {Report(gang, 1, 1)});
  clock_.Advance(absl::Seconds(5));
  Beat("w1", 0, {Report(gang, 1, 0)});
  Beat("w2", 0, {Report(gang, 1, 1)});
  scheduler_->Tick();
  EXPECT_EQ(Job(gang).state(), v1::RUNNING);

  // Rank 1's success says nothing; rank 0 uploads and completes the job.
  v1::CompleteJobRequest done1;
  done1.set_worker_id("w2");
  done1.set_job_id(gang);
  done1.set_attempt(1);
  done1.set_final_state(v1::SUCCEEDED);
  done1.mutable_last_report()->set_rank(1);
  ASSERT_TRUE(scheduler_->CompleteJob(done1).ok());
  EXPECT_EQ(Job(gang).state(), v1::RUNNING);
  ASSERT_TRUE(scheduler_->RecordAdapter(gang, 1, false, std::string(64, 'b'), 10).ok());
  v1::CompleteJobRequest done0 = done1;
  done0.set_worker_id("w1");
  done0.mutable_last_report()->set_rank(0);
  ASSERT_TRUE(scheduler_->CompleteJob(done0).ok());
  EXPECT_EQ(Job(gang).state(), v1::SUCCEEDED);
  // The slots are free again: the single job goes.
  EXPECT_EQ(Beat("w2", 1).leases_size(), 1);
  EXPECT_EQ(Job(single).state(), v1::RUNNING);
}

TEST_F(SchedulerGangTest, ASilentRankFencesTheWholeAttempt) {
  Register("w1");
  Register("w2");
  const std::string gang = Submit(2);
  RunGang(gang, 1);
  // w2 goes silent; w1 keeps beating.
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(absl::Seconds(2));
    Beat("w1", 0, {Report(gang, 1, 0)});
    scheduler_->Tick();
  }
  v1::Job job = Job(gang);
  EXPECT_EQ(job.state(), v1::QUEUED);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_TRUE(HasEvent(gang, "worker w2 of rank 1 sent no heartbeat")) << AllEvents(gang);
  // Rank 0's attempt is told to stop.
  v1::HeartbeatResponse resp = Beat("w1", 0, {Report(gang, 1, 0)});
  ASSERT_EQ(resp.drop_job_ids_size(), 1);
  EXPECT_EQ(resp.drop_job_ids(0), gang);
}

TEST_F(SchedulerGangTest, AWorkerDeathOrARankFailureFencesTheAttemptAndTheGangRunsAgain) {
  Register("w1");
  Register("w2");
  const std::string gang = Submit(2);
  RunGang(gang, 1);
  ASSERT_TRUE(scheduler_->WorkerExited("w2", "killed by signal 9 (Killed)").ok());
  EXPECT_EQ(Job(gang).state(), v1::QUEUED);
  EXPECT_EQ(Job(gang).attempt(), 2);
  // Rank 1's late report of attempt 1 is dropped.
  Register("w2");
  EXPECT_EQ(Beat("w2", 0, {Report(gang, 1, 1)}).drop_job_ids_size(), 1);

  // Attempt 2 on the same workers; rank 1 fails for the system: fenced again, not failed.
  Beat("w1", 0, {});  // w1's attempt-1 report is gone; it has a free slot again below
  RunGang(gang, 2);
  EXPECT_EQ(Job(gang).attempt(), 2);
  v1::CompleteJobRequest failed;
  failed.set_worker_id("w2");
  failed.set_job_id(gang);
  failed.set_attempt(2);
  failed.set_final_state(v1::FAILED);
  failed.mutable_error()->set_message("allreduce timed out");
  failed.mutable_error()->set_blame(v1::JobError::SYSTEM);
  failed.mutable_last_report()->set_rank(1);
  ASSERT_TRUE(scheduler_->CompleteJob(failed).ok());
  EXPECT_EQ(Job(gang).state(), v1::QUEUED);
  EXPECT_EQ(Job(gang).attempt(), 3);
  EXPECT_TRUE(HasEvent(gang, "rank 1 on worker w2 failed: allreduce timed out")) << AllEvents(gang);
  // A stale rank report of the fenced attempt is refused.
  EXPECT_EQ(scheduler_->CompleteJob(failed).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerGangTest, ARendezvousThatDoesNotCompleteInTimeIsRequeued) {
  Register("w1");
  Register("w2");
  const std::string gang = Submit(2);
  RunGang(gang, 1);
  // Both workers keep beating, but rank 1 never says it met rank 0.
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(absl::Seconds(2));
    Beat("w1", 0, {Report(gang, 1, 0, "127.0.0.1:4242", true)});
    Beat("w2", 0, {Report(gang, 1, 1)});
    scheduler_->Tick();
  }
  EXPECT_EQ(Job(gang).state(), v1::QUEUED);
  EXPECT_EQ(Job(gang).attempt(), 2);
  EXPECT_TRUE(HasEvent(gang, "rendezvous did not complete within 10s (rank 1 did not arrive)"))
      << AllEvents(gang);
}

TEST_F(SchedulerGangTest, TwoGangsOnTwoOneSlotWorkersNeverDeadlock) {
  Register("w1");
  Register("w2");
  const std::string a = Submit(2);
  const std::string b = Submit(2);
  // Heartbeats interleave; neither gang ever holds one slot of two.
  Beat("w1", 1);
  EXPECT_EQ(Job(a).state(), v1::QUEUED);
  ASSERT_EQ(Beat("w2", 1).leases_size(), 1);  // A: rank 0 on w2, whose heartbeat placed it
  EXPECT_EQ(Job(a).state(), v1::RUNNING);
  EXPECT_EQ(Job(b).state(), v1::QUEUED);
  EXPECT_EQ(Job(b).waiting_reason(),
            "waiting for 2 free slots on distinct workers; 0 free on 0 live workers of 2");
  // A runs; B still waits and holds nothing.
  Beat("w2", 0, {Report(a, 1, 0, "127.0.0.1:1")});
  ASSERT_EQ(Beat("w1", 1).leases_size(), 1);
  EXPECT_EQ(Job(b).state(), v1::QUEUED);
  // A finishes: B takes both slots.
  ASSERT_TRUE(scheduler_->RecordAdapter(a, 1, false, std::string(64, 'b'), 10).ok());
  v1::CompleteJobRequest done;
  done.set_worker_id("w2");
  done.set_job_id(a);
  done.set_attempt(1);
  done.set_final_state(v1::SUCCEEDED);
  ASSERT_TRUE(scheduler_->CompleteJob(done).ok());
  EXPECT_EQ(Job(a).state(), v1::SUCCEEDED);
  Beat("w2", 1);
  EXPECT_EQ(Job(b).state(), v1::QUEUED);  // w1 has not said it is free yet
  EXPECT_EQ(Beat("w1", 1).leases_size(), 1);
  EXPECT_EQ(Job(b).state(), v1::RUNNING);
  EXPECT_EQ(Job(b).waiting_reason(), "");
}

TEST_F(SchedulerGangTest, TwoGangsOnThreeOneSlotWorkersRunOneAfterTheOther) {
  Register("w1");
  Register("w2");
  Register("w3");
  const std::string a = Submit(2);
  const std::string b = Submit(2);
  Beat("w1", 1);
  Beat("w2", 1);
  Beat("w3", 1);
  EXPECT_EQ(Job(a).state(), v1::RUNNING);
  EXPECT_EQ(Job(b).state(), v1::QUEUED);
  // The third slot stays free and B holds nothing: one slot is not half a gang.
  EXPECT_EQ(Job(b).waiting_reason(),
            "waiting for 2 free slots on distinct workers; 1 free on 1 live worker of 3");
  const v1::Job running = Job(a);
  const std::vector<std::string> ranks(running.rank_worker_ids().begin(),
                                       running.rank_worker_ids().end());
  Beat(ranks[0], 0, {Report(a, 1, 0, "127.0.0.1:1", true)});
  ASSERT_EQ(Beat(ranks[1], 0).leases_size(), 1);
  ASSERT_TRUE(scheduler_->RecordAdapter(a, 1, false, std::string(64, 'b'), 10).ok());
  v1::CompleteJobRequest done;
  done.set_worker_id(ranks[0]);
  done.set_job_id(a);
  done.set_attempt(1);
  done.set_final_state(v1::SUCCEEDED);
  ASSERT_TRUE(scheduler_->CompleteJob(done).ok());
  // One of A's workers frees its slot: with the third, B is placed.
  Beat(ranks[0], 1);
  EXPECT_EQ(Job(b).state(), v1::RUNNING) << Job(b).waiting_reason();
}

TEST_F(SchedulerGangTest, AGangWiderThanTheClusterWaitsWithItsReasonAndHoldsNothingBack) {
  Register("w1");
  Register("w2");
  const std::string wide = Submit(3);
  const std::string single = Submit(1);
  EXPECT_EQ(Beat("w1", 1).leases_size(), 1);
  EXPECT_EQ(Job(single).state(), v1::RUNNING);
  EXPECT_EQ(Job(wide).state(), v1::QUEUED);
  EXPECT_THAT(Job(wide).waiting_reason(),
              HasSubstr("needs 3 slots on distinct workers; the server has 2 live workers"));
  // A third worker: it fits once three slots are free.
  Register("w3");
  Beat("w2", 1);
  Beat("w3", 1);
  EXPECT_EQ(Job(wide).state(), v1::QUEUED);
  EXPECT_THAT(Job(wide).waiting_reason(), HasSubstr("2 free on 2 live workers of 3"));
}

TEST_F(SchedulerGangTest, CancelReachesEveryRank) {
  Register("w1");
  Register("w2");
  const std::string gang = Submit(2);
  RunGang(gang, 1);
  ASSERT_TRUE(scheduler_->CancelJob(gang).ok());
  v1::HeartbeatResponse r1 = Beat("w2", 0, {Report(gang, 1, 1)});
  ASSERT_EQ(r1.cancel_job_ids_size(), 1);
  v1::HeartbeatResponse r0 = Beat("w1", 0, {Report(gang, 1, 0)});
  ASSERT_EQ(r0.cancel_job_ids_size(), 1);
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(gang);
  done.set_attempt(1);
  done.set_final_state(v1::CANCELLED);
  ASSERT_TRUE(scheduler_->CompleteJob(done).ok());
  EXPECT_EQ(Job(gang).state(), v1::CANCELLED);
  // Rank 1's own cancelled report after the end is fine.
  done.set_worker_id("w2");
  done.mutable_last_report()->set_rank(1);
  EXPECT_TRUE(scheduler_->CompleteJob(done).ok());
}

}  // namespace
}  // namespace peftd::server
