#include "storage/job_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "storage/blob_store.h"

namespace peftd::storage {
namespace {

namespace fs = std::filesystem;

fs::path Dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_store_" + name + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

v1::Job MakeJob(const std::string& id, const std::string& request_id = "",
                v1::JobState state = v1::QUEUED) {
  v1::Job job;
  job.set_id(id);
  job.set_request_id(request_id);
  job.set_state(state);
  job.set_attempt(1);
  job.mutable_spec()->set_base_model("tiny");
  job.mutable_create_time()->set_seconds(1700000000);
  return job;
}

v1::JobEvent Event(const std::string& message) {
  v1::JobEvent e;
  e.set_message(message);
  e.set_level(v1::JobEvent::INFO);
  return e;
}

std::unique_ptr<JobStore> OpenOrDie(const fs::path& path, int version = kSchemaVersion) {
  auto store = JobStore::Open(path.string(), version);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

TEST(JobStore, CreatesTheSchemaInAnEmptyFile) {
  const fs::path dir = Dir("empty");
  auto store = OpenOrDie(dir / "jobs.db");
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->schema_version(), kSchemaVersion);
  bool existed = true;
  ASSERT_TRUE(store->InsertJob(MakeJob("job-1"), {Event("queued")}, &existed).ok());
  EXPECT_FALSE(existed);
  auto job = store->GetJob("job-1");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->spec().base_model(), "tiny");
  EXPECT_EQ(store->GetJob("job-2").status().code(), absl::StatusCode::kNotFound);
  // Reopening an up-to-date file changes nothing.
  store.reset();
  store = OpenOrDie(dir / "jobs.db");
  EXPECT_EQ(store->schema_version(), kSchemaVersion);
  EXPECT_TRUE(store->GetJob("job-1").ok());
  SQLite::Database db((dir / "jobs.db").string());
  EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "wal");
}

// Builds a file as each older peftd left it (raw SQL of that version's tables) and opens it with
// this build: the rows survive and the newer features (label filter) work on them.
TEST(JobStore, MigratesFromEveryOlderVersion) {
  for (int version = 1; version < kSchemaVersion; ++version) {
    SCOPED_TRACE(absl::StrCat("from version ", version));
    const fs::path dir = Dir(absl::StrCat("migrate", version));
    const fs::path path = dir / "jobs.db";
    ASSERT_NE(OpenOrDie(path, version), nullptr);
    {
      SQLite::Database db(path.string(), SQLite::OPEN_READWRITE);
      EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(), version);
      v1::Job job = MakeJob("job-old", "req-old");
      (*job.mutable_labels())["team"] = "nlp";
      const std::string blob = job.SerializeAsString();
      SQLite::Statement ins(db,
                            "INSERT INTO jobs(id, request_id, state, create_time_us, job) "
                            "VALUES('job-old', 'req-old', 2, 1, ?)");
      ins.bind(1, blob.data(), static_cast<int>(blob.size()));
      ins.exec();
      if (version >= 3) {  // labels have their own table since version 3
        db.exec(
            "INSERT INTO job_labels(key, value, job_seq) "
            "SELECT 'team', 'nlp', seq FROM jobs WHERE id = 'job-old'");
      }
      const std::string ev = Event("queued").SerializeAsString();
      SQLite::Statement e(db, "INSERT INTO events(job_id, event) VALUES('job-old', ?)");
      e.bind(1, ev.data(), static_cast<int>(ev.size()));
      e.exec();
      if (version >= 2) {
        db.exec(
            "INSERT INTO datasets(id, sha256, create_time_us, dataset) "
            "VALUES('ds-1', 'abc', 1, x'')");
      }
    }
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->schema_version(), kSchemaVersion);
    auto job = store->GetJob("job-old");
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->request_id(), "req-old");
    JobQuery q;
    q.labels["team"] = "nlp";
    auto page = store->ListJobs(q);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_EQ(page->jobs.size(), 1u);
    EXPECT_EQ(page->jobs[0].id(), "job-old");
    auto events = store->ListEvents("job-old", 0, 10);
    ASSERT_TRUE(events.ok());
    ASSERT_EQ(events->size(), 1u);
    EXPECT_EQ((*events)[0].message(), "queued");
    if (version >= 2) EXPECT_TRUE(store->GetDataset("ds-1").ok());
    // Idempotency survives the migration.
    bool existed = false;
    auto again = store->InsertJob(MakeJob("job-new", "req-old"), {}, &existed);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(existed);
    EXPECT_EQ(again->id(), "job-old");
  }
}

TEST(JobStore, RefusesAFileFromANewerPeftd) {
  const fs::path dir = Dir("newer");
  {
    SQLite::Database db((dir / "jobs.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 99");
  }
  auto store = JobStore::Open((dir / "jobs.db").string());
  ASSERT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("schema version 99"), std::string::npos);
}

TEST(JobStore, ApplyWritesTheRowItsEventsAndRecordsTogether) {
  const fs::path dir = Dir("apply");
  auto store = OpenOrDie(dir / "jobs.db");
  bool existed;
  ASSERT_TRUE(store->InsertJob(MakeJob("job-1"), {Event("queued")}, &existed).ok());
  JobUpdate up;
  up.job = MakeJob("job-1", "", v1::RUNNING);
  up.events = {Event("leased"), Event("started")};
  v1::Checkpoint cp;
  cp.set_step(5);
  cp.set_attempt(1);
  cp.set_sha256("aa");
  up.checkpoint = cp;
  up.artifact = Artifact{"job-1", "adapter", "bb", 10};
  auto events = store->Apply(up);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_LT((*events)[0].id(), (*events)[1].id());
  EXPECT_EQ((*events)[0].job_id(), "job-1");
  EXPECT_EQ(store->GetJob("job-1")->state(), v1::RUNNING);
  EXPECT_EQ(store->ListCheckpoints("job-1")->size(), 1u);
  EXPECT_EQ((*store->GetArtifact("job-1", "adapter"))->sha256, "bb");
  EXPECT_FALSE(store->GetArtifact("job-1", "merged")->has_value());
  auto all = store->ListEvents("job-1", 0, 100);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(store->ListEvents("job-1", (*all)[0].id(), 100)->size(), 2u);

  // An update of a job that does not exist writes nothing at all (no orphan event).
  JobUpdate ghost;
  ghost.job = MakeJob("job-ghost");
  ghost.events = {Event("boo")};
  ghost.checkpoint = cp;
  EXPECT_EQ(store->Apply(ghost).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->ListEvents("job-ghost", 0, 10)->empty());
  EXPECT_TRUE(store->ListCheckpoints("job-ghost")->empty());
}

TEST(JobStore, ApplyDropsCheckpointsAndArtifactsAndKnowsWhichBlobsAreReferenced) {
  const fs::path dir = Dir("drop");
  auto store = OpenOrDie(dir / "jobs.db");
  bool existed;
  ASSERT_TRUE(store->InsertJob(MakeJob("job-1"), {}, &existed).ok());
  for (int step : {10, 20, 30}) {
    JobUpdate up;
    up.job = MakeJob("job-1", "", v1::RUNNING);
    v1::Checkpoint cp;
    cp.set_step(step);
    cp.set_attempt(2);
    cp.set_sha256(absl::StrCat("cp", step));
    up.checkpoint = cp;
    ASSERT_TRUE(store->Apply(up).ok());
  }
  JobUpdate up;
  up.job = MakeJob("job-1", "", v1::RUNNING);
  up.artifact = Artifact{"job-1", "adapter", "ad", 10, 2};
  ASSERT_TRUE(store->Apply(up).ok());
  EXPECT_EQ((*store->GetArtifact("job-1", "adapter"))->attempt, 2);
  EXPECT_EQ(*store->ReferencedBlobs(), (std::set<std::string>{"cp10", "cp20", "cp30", "ad"}));

  JobUpdate drop;
  drop.job = MakeJob("job-1", "", v1::QUEUED);
  drop.drop_checkpoints = {{2, 10}, {2, 20}};
  drop.drop_artifacts = true;
  ASSERT_TRUE(store->Apply(drop).ok());
  auto left = store->ListCheckpoints("job-1");
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].step(), 30);
  EXPECT_FALSE(store->GetArtifact("job-1", "adapter")->has_value());
  EXPECT_EQ(*store->ReferencedBlobs(), (std::set<std::string>{"cp30"}));
}

TEST(JobStore, ListsNewestFirstByPagesWithStateAndLabelFilters) {
  const fs::path dir = Dir("list");
  auto store = OpenOrDie(dir / "jobs.db");
  constexpr int kJobs = 25;
  for (int i = 0; i < kJobs; ++i) {
    v1::Job job = MakeJob(absl::StrCat("job-", i), "", i % 2 ? v1::SUCCEEDED : v1::QUEUED);
    (*job.mutable_labels())["parity"] = i % 2 ? "odd" : "even";
    if (i % 5 == 0) (*job.mutable_labels())["five"] = "yes";
    bool existed;
    ASSERT_TRUE(store->InsertJob(job, {}, &existed).ok());
  }
  JobQuery q;
  q.page_size = 10;
  std::vector<std::string> seen;
  int pages = 0;
  do {
    auto page = store->ListJobs(q);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& j : page->jobs) seen.push_back(j.id());
    q.page_token = page->next_page_token;
    ++pages;
  } while (!q.page_token.empty());
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kJobs));
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(seen[i], absl::StrCat("job-", kJobs - 1 - i));

  JobQuery odd;
  odd.page_size = 100;
  odd.states = {v1::SUCCEEDED};
  EXPECT_EQ(store->ListJobs(odd)->jobs.size(), 12u);
  JobQuery labelled;
  labelled.page_size = 100;
  labelled.labels = {{"parity", "even"}, {"five", "yes"}};  // 0, 10, 20
  auto page = store->ListJobs(labelled);
  ASSERT_EQ(page->jobs.size(), 3u);
  EXPECT_EQ(page->jobs[0].id(), "job-20");
  JobQuery both = labelled;
  both.states = {v1::SUCCEEDED};
  EXPECT_TRUE(store->ListJobs(both)->jobs.empty());

  JobQuery bad;
  bad.page_token = "not-a-token";
  EXPECT_EQ(store->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*DecodePageToken(EncodePageToken(42)), 42);
  EXPECT_EQ(*DecodePageToken(EncodePageToken(42, "sweeps"), "sweeps"), 42);
  EXPECT_FALSE(DecodePageToken(EncodePageToken(42), "sweeps").ok())
      << "a jobs token lists no sweeps";

  auto counts = store->CountJobsByState();
  EXPECT_EQ((*counts)[v1::QUEUED], 13);
  EXPECT_EQ((*counts)[v1::SUCCEEDED], 12);
  EXPECT_EQ(store->ListActiveJobs()->size(), 13u);
}

TEST(JobStore, ConcurrentWritersLoseNothing) {
  const fs::path dir = Dir("concurrent");
  auto store = OpenOrDie(dir / "jobs.db");
  constexpr int kThreads = 8, kJobsPerThread = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobsPerThread; ++i) {
        const std::string id = absl::StrCat("job-", t, "-", i);
        bool existed;
        if (!store->InsertJob(MakeJob(id), {Event("queued")}, &existed).ok()) ++failures;
        JobUpdate up;
        up.job = MakeJob(id, "", v1::RUNNING);
        up.events = {Event("running")};
        if (!store->Apply(up).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  auto counts = store->CountJobsByState();
  EXPECT_EQ((*counts)[v1::RUNNING], kThreads * kJobsPerThread);
  std::set<int64_t> ids;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kJobsPerThread; ++i) {
      auto events = store->ListEvents(absl::StrCat("job-", t, "-", i), 0, 10);
      ASSERT_EQ(events->size(), 2u);
      EXPECT_EQ((*events)[0].message(), "queued");
      for (const auto& e : *events) EXPECT_TRUE(ids.insert(e.id()).second) << "duplicate id";
    }
  }
}

// Two store handles on one file (as two connections would be) also serialize through SQLite's
// busy timeout instead of failing with SQLITE_BUSY.
TEST(JobStore, TwoConnectionsWriteTheSameFile) {
  const fs::path dir = Dir("twoconn");
  auto a = OpenOrDie(dir / "jobs.db");
  auto b = OpenOrDie(dir / "jobs.db");
  std::atomic<int> failures{0};
  auto writer = [&](JobStore* store, const std::string& prefix) {
    for (int i = 0; i < 100; ++i) {
      bool existed;
      if (!store->InsertJob(MakeJob(absl::StrCat(prefix, i)), {Event("e")}, &existed).ok()) {
        ++failures;
      }
    }
  };
  std::thread ta(writer, a.get(), "a-"), tb(writer, b.get(), "b-");
  ta.join();
  tb.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ((*a->CountJobsByState())[v1::QUEUED], 200);
}

TEST(JobStore, FiftyThreadsWithRepeatedRequestIdsMakeOneJobPerId) {
  const fs::path dir = Dir("idempotent");
  auto store = OpenOrDie(dir / "jobs.db");
  constexpr int kThreads = 50, kRequestIds = 10;
  std::vector<std::vector<std::string>> got(kThreads, std::vector<std::string>(kRequestIds));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRequestIds; ++r) {
        const int rid = (r + t) % kRequestIds;  // every thread in a different order
        bool existed;
        auto job =
            store->InsertJob(MakeJob(absl::StrCat("job-", t, "-", rid), absl::StrCat("req-", rid)),
                             {Event("queued")}, &existed);
        got[t][rid] = job.ok() ? job->id() : job.status().ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  JobQuery all;
  all.page_size = 1000;
  EXPECT_EQ(store->ListJobs(all)->jobs.size(), static_cast<size_t>(kRequestIds));
  for (int r = 0; r < kRequestIds; ++r) {
    for (int t = 1; t < kThreads; ++t) EXPECT_EQ(got[t][r], got[0][r]) << "request " << r;
    EXPECT_EQ(store->ListEvents(got[0][r], 0, 10)->size(), 1u);
  }
}

// The upload path is: bytes to a temp file, fsync, rename to the blob's name, then the record.
// A crash at any point leaves either no record, or a record whose blob is complete.
void WriteCheckpointAndCrash(const fs::path& dir, const char* crash_at) {
  static std::string crash_point;
  crash_point = crash_at;
  SetBlobStoreCrashHookForTest([](const char* point) {
    if (crash_point == point) _exit(0);
  });
  auto blobs = BlobStore::Open((dir / "blobs").string());
  auto store = JobStore::Open((dir / "jobs.db").string());
  if (!blobs.ok() || !store.ok()) _exit(2);
  const std::string tmp = blobs->TempPath();
  std::ofstream(tmp, std::ios::binary) << std::string(1 << 16, 'c');
  auto sha = blobs->Adopt(tmp);
  if (!sha.ok()) _exit(3);
  JobUpdate up;
  up.job = *(*store)->GetJob("job-1");
  v1::Checkpoint cp;
  cp.set_step(1);
  cp.set_attempt(1);
  cp.set_sha256(*sha);
  up.checkpoint = cp;
  if (!(*store)->Apply(up).ok()) _exit(4);
  _exit(0);
}

TEST(JobStore, ACrashBetweenTempWriteAndRenameLeavesNoDanglingRecord) {
  for (const char* crash_at : {"before-rename", "after-rename", "none"}) {
    SCOPED_TRACE(crash_at);
    const fs::path dir = Dir(absl::StrCat("crash-", crash_at));
    {
      auto store = OpenOrDie(dir / "jobs.db");
      bool existed;
      ASSERT_TRUE(store->InsertJob(MakeJob("job-1"), {}, &existed).ok());
    }
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) WriteCheckpointAndCrash(dir, crash_at);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);

    auto blobs = BlobStore::Open((dir / "blobs").string());  // sweeps temp files
    auto store = OpenOrDie(dir / "jobs.db");
    auto checkpoints = store->ListCheckpoints("job-1");
    ASSERT_TRUE(checkpoints.ok());
    for (const auto& cp : *checkpoints) {
      EXPECT_TRUE(blobs->Get(cp.sha256()).ok()) << "record points to a missing or bad blob";
    }
    EXPECT_EQ(checkpoints->size(), std::string(crash_at) == "none" ? 1u : 0u);
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir / "blobs")) {
      EXPECT_TRUE(IsSha256Hex(e.path().filename().string())) << e.path();
      ++files;
    }
    EXPECT_EQ(files, std::string(crash_at) == "before-rename" ? 0 : 1);
  }
}

}  // namespace
}  // namespace peftd::storage
