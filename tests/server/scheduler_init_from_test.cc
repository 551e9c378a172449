// JobSpec.init_from in the scheduler: the lease names the blob the job starts from (the adapter of
// the job, or its checkpoint of the step), and the lease may fetch that blob and no other.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "server/scheduler.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

class SchedulerInitFromTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / absl::StrCat("peftd_init_from_", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
    store_ = std::move(*storage::JobStore::Open((dir_ / "jobs.db").string()));
    blobs_ = std::make_unique<storage::BlobStore>(
        std::move(*storage::BlobStore::Open((dir_ / "blobs").string())));
    SchedulerOptions o;
    o.model_root = (dir_ / "models").string();
    scheduler_ = std::move(*Scheduler::Create(store_.get(), blobs_.get(), &clock_, o));
    v1::Dataset ds;
    ds.set_id("ds-1");
    ds.set_sha256(*blobs_->Put("{\"text\": \"x\"}\n"));
    ds.set_format("text");
    ASSERT_TRUE(scheduler_->RecordDataset(ds).ok());
    v1::RegisterRequest reg;
    reg.set_worker_id("w1");
    ASSERT_TRUE(scheduler_->Register(reg).ok());
  }
  void TearDown() override {
    scheduler_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  static v1::CreateJobRequest Request() {
    v1::CreateJobRequest r;
    r.mutable_spec()->set_base_model("tiny");
    r.mutable_spec()->set_method(v1::LORA);
    r.mutable_spec()->set_training_dataset_id("ds-1");
    return r;
  }
  v1::Lease LeaseOne() {
    v1::HeartbeatRequest hb;
    hb.set_worker_id("w1");
    hb.set_free_slots(1);
    auto resp = scheduler_->Heartbeat(hb);
    EXPECT_TRUE(resp.ok() && resp->leases_size() == 1);
    return resp.ok() && resp->leases_size() == 1 ? resp->leases(0) : v1::Lease();
  }

  fs::path dir_;
  FakeClock clock_;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerInitFromTest, TheLeaseNamesTheAdapterOrTheCheckpointAndMayFetchIt) {
  const std::string checkpoint(64, 'c'), adapter(64, 'a');
  ASSERT_TRUE(scheduler_->CreateJob(Request()).ok());
  const v1::Lease first = LeaseOne();
  EXPECT_FALSE(first.has_init_from());
  const std::string a = first.job_id();
  ASSERT_TRUE(scheduler_->RecordCheckpoint(a, 1, 5, checkpoint, 10).ok());
  ASSERT_TRUE(scheduler_->RecordAdapter(a, 1, false, adapter, 10).ok());
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(a);
  done.set_attempt(1);
  done.set_final_state(v1::SUCCEEDED);
  ASSERT_TRUE(scheduler_->CompleteJob(done).ok());

  v1::CreateJobRequest from_adapter = Request();
  from_adapter.mutable_spec()->mutable_init_from()->set_job(a);
  auto b = scheduler_->CreateJob(from_adapter);
  ASSERT_TRUE(b.ok()) << b.status();
  const v1::Lease lease_b = LeaseOne();
  ASSERT_EQ(lease_b.job_id(), b->id());
  EXPECT_EQ(lease_b.init_from().job_id(), a);
  EXPECT_EQ(lease_b.init_from().sha256(), adapter);
  EXPECT_TRUE(lease_b.init_from().adapter());
  EXPECT_TRUE(scheduler_->FindCheckpoint(b->id(), adapter).ok());
  // Only the blob the job starts from: not the other job's checkpoint.
  EXPECT_EQ(scheduler_->FindCheckpoint(b->id(), checkpoint).status().code(),
            absl::StatusCode::kNotFound);

  v1::CreateJobRequest from_checkpoint = Request();
  from_checkpoint.mutable_spec()->mutable_init_from()->set_job(a);
  from_checkpoint.mutable_spec()->mutable_init_from()->set_step(5);
  auto c = scheduler_->CreateJob(from_checkpoint);
  ASSERT_TRUE(c.ok()) << c.status();
  const v1::Lease lease_c = LeaseOne();
  EXPECT_EQ(lease_c.init_from().step(), 5);
  EXPECT_EQ(lease_c.init_from().sha256(), checkpoint);
  EXPECT_FALSE(lease_c.init_from().adapter());
  EXPECT_TRUE(scheduler_->FindCheckpoint(c->id(), checkpoint).ok());

  // A spec of other shapes is refused at submit and nothing is stored.
  v1::CreateJobRequest other = from_adapter;
  other.mutable_spec()->set_method(v1::HUT);
  auto refused = scheduler_->CreateJob(other);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->ListJobs({})->jobs_size(), 3);
}

// `download --step`: the adapter uploaded with a checkpoint is served while the job runs and
// after, and goes with its checkpoint.
TEST_F(SchedulerInitFromTest, ACheckpointsAdapterIsServedUntilItsCheckpointGoes) {
  v1::CreateJobRequest req = Request();
  req.mutable_spec()->set_keep_checkpoints(1);
  ASSERT_TRUE(scheduler_->CreateJob(req).ok());
  const v1::Lease lease = LeaseOne();
  const std::string id = lease.job_id();
  ASSERT_TRUE(scheduler_->RecordCheckpoint(id, 1, 5, std::string(64, '5'), 10).ok());
  ASSERT_TRUE(scheduler_->RecordAdapter(id, 1, false, std::string(64, 'a'), 7, 5).ok());
  auto five = scheduler_->GetArtifact(id, false, 5);
  ASSERT_TRUE(five.ok()) << five.status();
  EXPECT_EQ(five->sha256, std::string(64, 'a'));
  EXPECT_EQ(five->size_bytes, 7);
  // The step's adapter is not the job's adapter, which a running job has not got.
  EXPECT_EQ(scheduler_->GetJob(id)->adapter_sha256(), "");
  EXPECT_EQ(scheduler_->GetArtifact(id, false).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto missing = scheduler_->GetArtifact(id, false, 6);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "job " + id + " keeps no checkpoint of step 6; it keeps 5");
  EXPECT_EQ(scheduler_->GetArtifact(id, true, 5).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A lost attempt's final uploads are discarded; its checkpoints and their adapters stay.
  clock_.Advance(absl::Seconds(60));
  scheduler_->Tick();
  ASSERT_EQ(scheduler_->GetJob(id)->state(), v1::QUEUED);
  EXPECT_TRUE(scheduler_->GetArtifact(id, false, 5).ok());
  const v1::Lease second = LeaseOne();
  ASSERT_EQ(second.attempt(), 2);
  // keep_checkpoints 1: the checkpoint of step 10 replaces that of step 5, and its adapter goes.
  ASSERT_TRUE(scheduler_->RecordCheckpoint(id, 2, 10, std::string(64, '6'), 10).ok());
  EXPECT_EQ(scheduler_->GetArtifact(id, false, 5).status().code(), absl::StatusCode::kNotFound);
  auto blobs = store_->ReferencedBlobs();
  ASSERT_TRUE(blobs.ok());
  EXPECT_EQ(blobs->count(std::string(64, 'a')), 0u);
}

}  // namespace
}  // namespace peftd::server
