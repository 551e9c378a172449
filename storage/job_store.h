// The job store (DESIGN.md "Storage"): jobs, their event logs, datasets, checkpoints, artifacts,
// workers and sweeps in one SQLite file through SQLiteCpp. WAL mode, busy_timeout, foreign keys on;
// the schema is migrated step by step by PRAGMA user_version when the file is opened.
//
// Rows hold the serialized proto (the Job exactly as the server knows it) plus the indexed columns
// that queries need (state, request_id, insertion order, labels). The store holds no policy: the
// scheduler decides what a job becomes and hands the store the new row together with its events,
// which Apply() writes in ONE transaction, so a crash never separates a state change from its log.
//
// Thread-safe: one connection guarded by a mutex (SQLite serializes writers anyway; the queries are
// index lookups of well under a millisecond).
#ifndef PEFTD_STORAGE_JOB_STORE_H_
#define PEFTD_STORAGE_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "peftd/v1/job.pb.h"
#include "peftd/v1/sweep.pb.h"
#include "peftd/v1/worker.pb.h"

namespace SQLite {
class Database;
}

namespace peftd::storage {

// The schema version this build writes. Older files are migrated on Open; newer ones refused.
inline constexpr int kSchemaVersion = 5;

struct JobQuery {
  int page_size = 50;                         // 1..1000 (the caller applies defaults and limits)
  std::string page_token;                     // from a previous JobPage; empty = newest first
  std::vector<v1::JobState> states;           // empty = all
  std::map<std::string, std::string> labels;  // all must match
};

struct JobPage {
  std::vector<v1::Job> jobs;    // newest first
  std::string next_page_token;  // empty on the last page
};

struct SweepPage {
  std::vector<v1::Sweep> sweeps;  // newest first
  std::string next_page_token;    // empty on the last page
};

// A new job and the events that explain it.
struct NewJob {
  v1::Job job;
  std::vector<v1::JobEvent> events;
};

// A stored build artifact of a job (the adapter archive, the merged model archive, or the adapter
// of one of its checkpoints).
struct Artifact {
  std::string job_id;
  std::string kind;  // "adapter", "merged" or CheckpointAdapterKind(step)
  std::string sha256;
  int64_t size_bytes = 0;
  int attempt = 0;  // the attempt that uploaded it
};

// The artifact kind of the adapter written with the checkpoint of `step`: "adapter@step-50". It
// goes when that checkpoint's record is dropped, and stays when a requeue drops the attempt's
// final artifacts.
inline std::string CheckpointAdapterKind(int64_t step) {
  return "adapter@step-" + std::to_string(step);
}

// One write of a job: its new row, the events that explain it, and optional checkpoint and
// artifact records to add or remove. Applied in one transaction (removals before additions).
struct JobUpdate {
  v1::Job job;
  std::vector<v1::JobEvent> events;  // ids are assigned by the store
  std::optional<v1::Checkpoint> checkpoint;
  std::optional<Artifact> artifact;
  std::vector<std::pair<int, int64_t>> drop_checkpoints;  // (attempt, step) records to delete
  bool drop_artifacts = false;  // delete the job's final artifacts (adapter, merged)
};

class JobStore {
 public:
  // Opens (creating when missing) the database at `path` and migrates it to `target_version`
  // (tests pass an older version to build a file as an older peftd left it). A write waits up to
  // `busy_timeout` for another connection's lock before it fails with Internal.
  // FailedPrecondition when the file's version is newer than this build knows.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(
      const std::string& path, int target_version = kSchemaVersion,
      absl::Duration busy_timeout = absl::Seconds(5));
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  int schema_version();

  // OK when a write transaction can start now (takes and releases SQLite's write lock); the
  // scheduler probes with it after writes failed.
  absl::Status CheckWritable();

  // Inserts a new job (state, ids and times set by the caller) with its first events. When a job
  // with the same non-empty request_id exists, nothing is written, that job is returned and
  // `*existed` is set: concurrent inserts of one request_id yield exactly one job.
  absl::StatusOr<v1::Job> InsertJob(const v1::Job& job, std::vector<v1::JobEvent> events,
                                    bool* existed);
  // Writes `update` in one transaction; returns its events with their assigned ids.
  // NotFound when the job does not exist.
  absl::StatusOr<std::vector<v1::JobEvent>> Apply(const JobUpdate& update);

  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query);
  // Jobs not in a final state, oldest first (for restart recovery).
  absl::StatusOr<std::vector<v1::Job>> ListActiveJobs();
  absl::StatusOr<std::map<v1::JobState, int64_t>> CountJobsByState();

  // Events of a job with id > after_event_id, oldest first, at most `limit`.
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       int64_t after_event_id, int limit);

  absl::StatusOr<std::vector<v1::Checkpoint>> ListCheckpoints(const std::string& job_id);
  absl::StatusOr<std::optional<Artifact>> GetArtifact(const std::string& job_id,
                                                      const std::string& kind);

  // The sha256 of every blob a row refers to (datasets, checkpoints, artifacts): what the blob
  // sweep must keep.
  absl::StatusOr<std::set<std::string>> ReferencedBlobs();

  // Records a dataset; storing the same id again is a no-op that returns the stored row.
  absl::StatusOr<v1::Dataset> InsertDataset(const v1::Dataset& dataset);
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& dataset_id);
  absl::StatusOr<std::optional<v1::Dataset>> FindDatasetBySha256(const std::string& sha256);
  absl::StatusOr<std::vector<v1::Dataset>> ListDatasets();

  // --- Sweeps (storage/sweep_store.cc) ---------------------------------------------------------
  // The stored row of a sweep is a v1::Sweep as the scheduler made it (spec, children's ids and
  // values, cancel_requested); the live columns of its children are filled by the reader.

  // Inserts a sweep and all its children (each with sweep_id set) in one transaction. When a
  // sweep with the same non-empty request_id exists, nothing is written, that sweep is returned
  // and `*existed` is set.
  absl::StatusOr<v1::Sweep> InsertSweep(const v1::Sweep& sweep, const std::vector<NewJob>& children,
                                        bool* existed);
  absl::StatusOr<v1::Sweep> GetSweep(const std::string& sweep_id);
  // Rewrites a sweep's row (cancel_requested). NotFound when it does not exist.
  absl::Status UpdateSweep(const v1::Sweep& sweep);
  // Newest first; page_size as in JobQuery.
  absl::StatusOr<SweepPage> ListSweeps(int page_size, const std::string& page_token);
  // The jobs of a sweep, oldest first.
  absl::StatusOr<std::vector<v1::Job>> ListSweepJobs(const std::string& sweep_id);

  // Worker registrations, for inspection across restarts.
  absl::Status UpsertWorker(const v1::RegisterRequest& worker, absl::Time last_seen);
  absl::StatusOr<std::vector<v1::RegisterRequest>> ListWorkers();

 private:
  explicit JobStore(std::unique_ptr<SQLite::Database> db);
  absl::StatusOr<v1::Job> GetJobLocked(const std::string& job_id);
  std::vector<v1::JobEvent> AppendEventsLocked(const std::string& job_id,
                                               std::vector<v1::JobEvent> events);
  void WriteLabelsLocked(int64_t seq, const v1::Job& job);
  // Writes a new job's row, labels and events; inside the caller's transaction.
  void InsertJobRowLocked(const v1::Job& job, std::vector<v1::JobEvent> events);

  std::mutex mu_;
  std::unique_ptr<SQLite::Database> db_;  // guarded by mu_
};

// Opaque page tokens of ListJobs, or of another listing with its own `kind` (ListSweeps passes
// "sweeps"): a token of one listing is refused by the other. Exposed for tests of malformed tokens.
std::string EncodePageToken(int64_t seq, const std::string& kind = "jobs");
absl::StatusOr<int64_t> DecodePageToken(const std::string& token, const std::string& kind = "jobs");

}  // namespace peftd::storage

#endif  // PEFTD_STORAGE_JOB_STORE_H_
