// The sweeps table: a sweep and its children go in together or not at all, a request id makes
// one sweep, and a sweep's jobs are found by its id.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "storage/job_store.h"

namespace peftd::storage {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<JobStore> Fresh(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("peftd_sweeps_" + name + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return std::move(*JobStore::Open((dir / "jobs.db").string()));
}

v1::Sweep MakeSweep(const std::string& id, const std::string& request_id = "") {
  v1::Sweep s;
  s.set_id(id);
  s.set_request_id(request_id);
  s.mutable_spec()->set_max_concurrency(2);
  return s;
}

NewJob Child(const std::string& id, const std::string& sweep_id) {
  NewJob c;
  c.job.set_id(id);
  c.job.set_state(v1::QUEUED);
  c.job.set_sweep_id(sweep_id);
  v1::JobEvent e;
  e.set_message("queued");
  c.events.push_back(e);
  return c;
}

TEST(SweepStore, ASweepAndItsChildrenAreStoredTogether) {
  auto store = Fresh("together");
  bool existed = true;
  ASSERT_TRUE(store
                  ->InsertSweep(MakeSweep("sweep-1", "r-1"),
                                {Child("job-1", "sweep-1"), Child("job-2", "sweep-1")}, &existed)
                  .ok());
  EXPECT_FALSE(existed);
  ASSERT_TRUE(store
                  ->InsertJob(
                      [] {
                        v1::Job j;
                        j.set_id("job-alone");
                        j.set_state(v1::QUEUED);
                        return j;
                      }(),
                      {}, &existed)
                  .ok());
  auto jobs = store->ListSweepJobs("sweep-1");
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].id(), "job-1");
  EXPECT_EQ(store->ListEvents("job-2", 0, 10)->size(), 1u);
  EXPECT_EQ(store->GetSweep("sweep-1")->spec().max_concurrency(), 2);
  EXPECT_EQ(store->GetSweep("sweep-2").status().code(), absl::StatusCode::kNotFound);

  // The same request id returns the first sweep and writes nothing.
  auto again =
      store->InsertSweep(MakeSweep("sweep-2", "r-1"), {Child("job-3", "sweep-2")}, &existed);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(existed);
  EXPECT_EQ(again->id(), "sweep-1");
  EXPECT_EQ(store->GetJob("job-3").status().code(), absl::StatusCode::kNotFound);

  // A child that cannot be written (its id is taken) takes the sweep with it.
  auto clash = store->InsertSweep(MakeSweep("sweep-3"),
                                  {Child("job-4", "sweep-3"), Child("job-1", "sweep-3")}, &existed);
  EXPECT_FALSE(clash.ok());
  EXPECT_EQ(store->GetSweep("sweep-3").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->GetJob("job-4").status().code(), absl::StatusCode::kNotFound);

  v1::Sweep cancelled = *store->GetSweep("sweep-1");
  cancelled.set_cancel_requested(true);
  ASSERT_TRUE(store->UpdateSweep(cancelled).ok());
  EXPECT_TRUE(store->GetSweep("sweep-1")->cancel_requested());
}

TEST(SweepStore, ListsNewestFirstInPages) {
  auto store = Fresh("pages");
  bool existed = false;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->InsertSweep(MakeSweep("sweep-" + std::to_string(i)), {}, &existed).ok());
  }
  auto first = store->ListSweeps(3, "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->sweeps.size(), 3u);
  EXPECT_EQ(first->sweeps[0].id(), "sweep-4");
  ASSERT_FALSE(first->next_page_token.empty());
  auto second = store->ListSweeps(3, first->next_page_token);
  ASSERT_EQ(second->sweeps.size(), 2u);
  EXPECT_EQ(second->sweeps[1].id(), "sweep-0");
  EXPECT_TRUE(second->next_page_token.empty());
  EXPECT_EQ(store->ListSweeps(3, "junk").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace peftd::storage
