// CreateJob checks the memory estimate against what the scheduler knows: the registered workers'
// advertised memory, or this host's while its local workers have not registered.
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

constexpr int64_t kGiB = int64_t{1} << 30;

class SchedulerAdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("peftd_sched_adm_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name(), getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << peftd::testing::kTestModelConfigJson;
    store_ = std::move(*storage::JobStore::Open((dir_ / "jobs.db").string()));
    blobs_ = std::make_unique<storage::BlobStore>(
        std::move(*storage::BlobStore::Open((dir_ / "blobs").string())));
    v1::Dataset ds;
    ds.set_id("ds-1");
    ds.set_sha256(*blobs_->Put("{\"text\": \"x\"}\n"));
    ds.set_format("text");
    ds.set_size_bytes(14);
    ASSERT_TRUE(store_->InsertDataset(ds).ok());
  }
  void TearDown() override {
    scheduler_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  void Start(int64_t local_worker_memory_bytes) {
    SchedulerOptions o;
    o.model_root = (dir_ / "models").string();
    o.local_worker_memory_bytes = local_worker_memory_bytes;
    scheduler_ = std::move(*Scheduler::Create(store_.get(), blobs_.get(), &clock_, o));
  }
  // A job of about 13 GiB on the 2-layer model: batch 16 x 4096 tokens of attention.
  static v1::CreateJobRequest BigRequest() {
    v1::CreateJobRequest r;
    r.mutable_spec()->set_base_model("tiny");
    r.mutable_spec()->set_method(v1::LORA);
    r.mutable_spec()->set_training_dataset_id("ds-1");
    r.mutable_spec()->set_batch_size(16);
    r.mutable_spec()->set_max_seq_len(4096);
    return r;
  }
  void Register(const std::string& id, int64_t memory_bytes) {
    v1::RegisterRequest r;
    r.set_worker_id(id);
    auto* d = r.add_devices();
    d->set_name("cpu");
    d->set_memory_bytes(memory_bytes);
    ASSERT_TRUE(scheduler_->Register(r).ok());
  }

  fs::path dir_;
  FakeClock clock_;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerAdmissionTest, LocalHostMemoryCountsUntilWorkersRegister) {
  Start(/*local_worker_memory_bytes=*/kGiB);
  auto refused = scheduler_->CreateJob(BigRequest());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("more than this host (its local workers have not registered yet) has: "
                        "1.0 GiB"));
  Register("w-big", 64 * kGiB);
  EXPECT_TRUE(scheduler_->CreateJob(BigRequest()).ok());
}

TEST_F(SchedulerAdmissionTest, RegisteredWorkersAdvertiseTheirMemory) {
  Start(/*local_worker_memory_bytes=*/0);
  EXPECT_TRUE(scheduler_->CreateJob(BigRequest()).ok());  // nobody to compare with yet
  Register("w-small", 2 * kGiB);
  auto refused = scheduler_->CreateJob(BigRequest());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("more than the only worker (w-small) has: 2.0 GiB"));
  v1::CreateJobRequest small = BigRequest();
  small.mutable_spec()->set_max_seq_len(256);
  EXPECT_TRUE(scheduler_->CreateJob(small).ok());
  Register("w-old", 0);  // advertises nothing: it might fit, so the job is not refused
  EXPECT_TRUE(scheduler_->CreateJob(BigRequest()).ok());
}

}  // namespace
}  // namespace peftd::server
