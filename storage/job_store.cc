#include "storage/job_store.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <functional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "storage/sqlite_rows.h"

namespace peftd::storage {
namespace {

using internal::BindBlob;
using internal::Guarded;
using internal::ParseColumn;
using internal::Serialize;
using internal::ToMicros;

// One schema step: applied in its own transaction together with `PRAGMA user_version = N`.
using Migration = std::function<void(SQLite::Database&)>;

void InsertLabels(SQLite::Database& db, int64_t seq, const v1::Job& job) {
  for (const auto& [key, value] : job.labels()) {
    SQLite::Statement ins(db,
                          "INSERT OR IGNORE INTO job_labels(key, value, job_seq) VALUES(?,?,?)");
    ins.bind(1, key);
    ins.bind(2, value);
    ins.bind(3, seq);
    ins.exec();
  }
}

// The schema, oldest step first. Never edit a step that has shipped: append a new one.
const std::vector<Migration>& Migrations() {
  static const auto* steps = new std::vector<Migration>{
      // 1: jobs and their event logs.
      [](SQLite::Database& db) {
        db.exec(R"sql(
          CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: ListJobs pages by it
            id TEXT NOT NULL UNIQUE,
            request_id TEXT UNIQUE,                 -- NULL when the client gave none
            state INTEGER NOT NULL,                 -- v1.JobState
            create_time_us INTEGER NOT NULL,
            job BLOB NOT NULL                       -- serialized v1.Job
          );
          CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,   -- monotonic, never reused
            job_id TEXT NOT NULL REFERENCES jobs(id),
            event BLOB NOT NULL                     -- serialized v1.JobEvent
          );
          CREATE INDEX events_by_job ON events(job_id, id);
        )sql");
      },
      // 2: datasets, checkpoints and artifacts (their bytes live in the blob store).
      [](SQLite::Database& db) {
        db.exec(R"sql(
          CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            create_time_us INTEGER NOT NULL,
            dataset BLOB NOT NULL                   -- serialized v1.Dataset
          );
          CREATE TABLE checkpoints (
            job_id TEXT NOT NULL REFERENCES jobs(id),
            attempt INTEGER NOT NULL,
            step INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            checkpoint BLOB NOT NULL,               -- serialized v1.Checkpoint
            PRIMARY KEY (job_id, attempt, step)
          );
          CREATE TABLE artifacts (
            job_id TEXT NOT NULL REFERENCES jobs(id),
            kind TEXT NOT NULL,                     -- adapter | merged
            sha256 TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            PRIMARY KEY (job_id, kind)
          );
        )sql");
      },
      // 3: workers, label filtering (backfilled from the stored jobs) and the state index.
      [](SQLite::Database& db) {
        db.exec(R"sql(
          CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            last_seen_us INTEGER NOT NULL,
            worker BLOB NOT NULL                    -- serialized v1.RegisterRequest
          );
          CREATE TABLE job_labels (
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            job_seq INTEGER NOT NULL REFERENCES jobs(seq),
            PRIMARY KEY (key, value, job_seq)
          ) WITHOUT ROWID;
          CREATE INDEX jobs_by_state ON jobs(state, seq);
        )sql");
        SQLite::Statement q(db, "SELECT seq, job FROM jobs");
        while (q.executeStep()) {
          InsertLabels(db, q.getColumn(0).getInt64(), ParseColumn<v1::Job>(q.getColumn(1)));
        }
      },
      // 4: the attempt an artifact belongs to (0: written before attempts were recorded), and
      // lookups by sha256 for the blob sweep.
      [](SQLite::Database& db) {
        db.exec(R"sql(
          ALTER TABLE artifacts ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
          CREATE INDEX checkpoints_by_sha256 ON checkpoints(sha256);
          CREATE INDEX artifacts_by_sha256 ON artifacts(sha256);
        )sql");
      },
      // 5: sweeps, and the sweep a job belongs to (NULL for jobs submitted alone).
      [](SQLite::Database& db) {
        db.exec(R"sql(
          CREATE TABLE sweeps (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: ListSweeps pages by it
            id TEXT NOT NULL UNIQUE,
            request_id TEXT UNIQUE,                 -- NULL when the client gave none
            create_time_us INTEGER NOT NULL,
            sweep BLOB NOT NULL                     -- serialized v1.Sweep (no live numbers)
          );
          ALTER TABLE jobs ADD COLUMN sweep_id TEXT REFERENCES sweeps(id);
          CREATE INDEX jobs_by_sweep ON jobs(sweep_id, seq);
        )sql");
      },
  };
  return *steps;
}

}  // namespace

std::string EncodePageToken(int64_t seq, const std::string& kind) {
  return absl::WebSafeBase64Escape(absl::StrCat(kind, "-before:", seq));
}

absl::StatusOr<int64_t> DecodePageToken(const std::string& token, const std::string& kind) {
  const std::string prefix = kind + "-before:";
  std::string raw;
  int64_t seq = 0;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.rfind(prefix, 0) != 0 ||
      !absl::SimpleAtoi(raw.substr(prefix.size()), &seq) || seq <= 0) {
    return absl::InvalidArgumentError(
        "page_token: not a token this server issued; pass the next_page_token of the previous "
        "response, or none for the first page");
  }
  return seq;
}

JobStore::JobStore(std::unique_ptr<SQLite::Database> db) : db_(std::move(db)) {}
JobStore::~JobStore() = default;

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path,
                                                         int target_version,
                                                         absl::Duration busy_timeout) {
  return Guarded("opening", [&]() -> absl::StatusOr<std::unique_ptr<JobStore>> {
    auto db = std::make_unique<SQLite::Database>(
        path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_FULLMUTEX);
    db->setBusyTimeout(static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
    db->exec("PRAGMA journal_mode = WAL");
    // WAL + NORMAL: a committed transaction survives a process crash (kill -9); only a power
    // loss can take back the last commits, never corrupt the file.
    db->exec("PRAGMA synchronous = NORMAL");
    db->exec("PRAGMA foreign_keys = ON");
    const auto& steps = Migrations();
    const int have = db->execAndGet("PRAGMA user_version").getInt();
    if (have > static_cast<int>(steps.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": schema version ", have, " is newer than this peftd knows (",
                       steps.size(), "); run a newer peftd on this data dir"));
    }
    for (int v = have; v < target_version && v < static_cast<int>(steps.size()); ++v) {
      SQLite::Transaction tx(*db, SQLite::TransactionBehavior::IMMEDIATE);
      steps[v](*db);
      db->exec(absl::StrCat("PRAGMA user_version = ", v + 1));
      tx.commit();
    }
    return std::unique_ptr<JobStore>(new JobStore(std::move(db)));
  });
}

absl::Status JobStore::CheckWritable() {
  return Guarded("checking for writes", [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    // Taking the write lock is the whole test; the transaction rolls back when it goes out of
    // scope, uncommitted.
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    return absl::OkStatus();
  });
}

int JobStore::schema_version() {
  std::lock_guard<std::mutex> lock(mu_);
  return db_->execAndGet("PRAGMA user_version").getInt();
}

std::vector<v1::JobEvent> JobStore::AppendEventsLocked(const std::string& job_id,
                                                       std::vector<v1::JobEvent> events) {
  for (auto& e : events) {
    e.set_job_id(job_id);
    e.clear_id();
    SQLite::Statement ins(*db_, "INSERT INTO events(job_id, event) VALUES(?, ?)");
    ins.bind(1, job_id);
    BindBlob(ins, 2, Serialize(e));
    ins.exec();
    e.set_id(db_->getLastInsertRowid());
  }
  return events;
}

void JobStore::WriteLabelsLocked(int64_t seq, const v1::Job& job) { InsertLabels(*db_, seq, job); }

void JobStore::InsertJobRowLocked(const v1::Job& job, std::vector<v1::JobEvent> events) {
  SQLite::Statement ins(*db_,
                        "INSERT INTO jobs(id, request_id, state, create_time_us, job, sweep_id) "
                        "VALUES(?, ?, ?, ?, ?, ?)");
  ins.bind(1, job.id());
  if (job.request_id().empty()) {
    ins.bind(2);  // NULL: many jobs without a request id
  } else {
    ins.bind(2, job.request_id());
  }
  ins.bind(3, static_cast<int>(job.state()));
  ins.bind(4, ToMicros(job.create_time()));
  BindBlob(ins, 5, Serialize(job));
  if (job.sweep_id().empty()) {
    ins.bind(6);
  } else {
    ins.bind(6, job.sweep_id());
  }
  ins.exec();
  WriteLabelsLocked(db_->getLastInsertRowid(), job);
  AppendEventsLocked(job.id(), std::move(events));
}

absl::StatusOr<v1::Job> JobStore::InsertJob(const v1::Job& job, std::vector<v1::JobEvent> events,
                                            bool* existed) {
  return Guarded("inserting a job", [&]() -> absl::StatusOr<v1::Job> {
    std::lock_guard<std::mutex> lock(mu_);
    *existed = false;
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!job.request_id().empty()) {
      SQLite::Statement q(*db_, "SELECT job FROM jobs WHERE request_id = ?");
      q.bind(1, job.request_id());
      if (q.executeStep()) {
        *existed = true;
        return ParseColumn<v1::Job>(q.getColumn(0));
      }
    }
    InsertJobRowLocked(job, std::move(events));
    tx.commit();
    return job;
  });
}

absl::StatusOr<std::vector<v1::JobEvent>> JobStore::Apply(const JobUpdate& update) {
  return Guarded("updating a job", [&]() -> absl::StatusOr<std::vector<v1::JobEvent>> {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string& id = update.job.id();
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement up(*db_, "UPDATE jobs SET state = ?, job = ? WHERE id = ?");
    up.bind(1, static_cast<int>(update.job.state()));
    BindBlob(up, 2, Serialize(update.job));
    up.bind(3, id);
    if (up.exec() == 0) return absl::NotFoundError(absl::StrCat("no job ", id));
    if (update.checkpoint) {
      SQLite::Statement ins(*db_,
                            "INSERT OR REPLACE INTO checkpoints(job_id, attempt, step, sha256, "
                            "checkpoint) VALUES(?, ?, ?, ?, ?)");
      ins.bind(1, id);
      ins.bind(2, update.checkpoint->attempt());
      ins.bind(3, static_cast<int64_t>(update.checkpoint->step()));
      ins.bind(4, update.checkpoint->sha256());
      BindBlob(ins, 5, Serialize(*update.checkpoint));
      ins.exec();
    }
    for (const auto& [attempt, step] : update.drop_checkpoints) {
      SQLite::Statement del(
          *db_, "DELETE FROM checkpoints WHERE job_id = ? AND attempt = ? AND step = ?");
      del.bind(1, id);
      del.bind(2, attempt);
      del.bind(3, static_cast<int64_t>(step));
      del.exec();
      SQLite::Statement adapter(
          *db_, "DELETE FROM artifacts WHERE job_id = ? AND kind = ? AND attempt = ?");
      adapter.bind(1, id);
      adapter.bind(2, CheckpointAdapterKind(step));
      adapter.bind(3, attempt);
      adapter.exec();
    }
    if (update.drop_artifacts) {
      SQLite::Statement del(
          *db_, "DELETE FROM artifacts WHERE job_id = ? AND kind IN ('adapter', 'merged')");
      del.bind(1, id);
      del.exec();
    }
    if (update.artifact) {
      SQLite::Statement ins(*db_,
                            "INSERT OR REPLACE INTO artifacts(job_id, kind, sha256, size_bytes, "
                            "attempt) VALUES(?, ?, ?, ?, ?)");
      ins.bind(1, id);
      ins.bind(2, update.artifact->kind);
      ins.bind(3, update.artifact->sha256);
      ins.bind(4, update.artifact->size_bytes);
      ins.bind(5, update.artifact->attempt);
      ins.exec();
    }
    auto events = AppendEventsLocked(id, update.events);
    tx.commit();
    return events;
  });
}

absl::StatusOr<v1::Job> JobStore::GetJobLocked(const std::string& job_id) {
  SQLite::Statement q(*db_, "SELECT job FROM jobs WHERE id = ?");
  q.bind(1, job_id);
  if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return ParseColumn<v1::Job>(q.getColumn(0));
}

absl::StatusOr<v1::Job> JobStore::GetJob(const std::string& job_id) {
  return Guarded("reading a job", [&]() -> absl::StatusOr<v1::Job> {
    std::lock_guard<std::mutex> lock(mu_);
    return GetJobLocked(job_id);
  });
}

absl::StatusOr<JobPage> JobStore::ListJobs(const JobQuery& query) {
  int64_t before = 0;
  if (!query.page_token.empty()) {
    ASSIGN_OR_RETURN(before, DecodePageToken(query.page_token));
  }
  return Guarded("listing jobs", [&]() -> absl::StatusOr<JobPage> {
    // With a label filter the first label drives the scan: job_labels' primary key (key, value,
    // job_seq) yields exactly the matching jobs, newest first, so a rare label costs a few rows
    // instead of a walk over every job. Other labels are primary-key probes.
    const bool by_label = !query.labels.empty();
    std::string sql = by_label ? "SELECT jobs.seq, jobs.job FROM job_labels l0 JOIN jobs ON "
                                 "jobs.seq = l0.job_seq WHERE l0.key = ? AND l0.value = ?"
                               : "SELECT jobs.seq, jobs.job FROM jobs WHERE 1";
    const char* seq_column = by_label ? "l0.job_seq" : "jobs.seq";
    if (before > 0) absl::StrAppend(&sql, " AND ", seq_column, " < ?");
    if (!query.states.empty()) {
      std::vector<std::string> marks(query.states.size(), "?");
      absl::StrAppend(&sql, " AND jobs.state IN (", absl::StrJoin(marks, ","), ")");
    }
    for (size_t i = 1; i < query.labels.size(); ++i) {
      absl::StrAppend(&sql,
                      " AND EXISTS (SELECT 1 FROM job_labels l WHERE l.key = ? AND l.value = ? "
                      "AND l.job_seq = jobs.seq)");
    }
    absl::StrAppend(&sql, " ORDER BY ", seq_column, " DESC LIMIT ?");
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, sql);
    int i = 1;
    auto label = query.labels.begin();
    if (by_label) {
      q.bind(i++, label->first);
      q.bind(i++, label->second);
      ++label;
    }
    if (before > 0) q.bind(i++, before);
    for (v1::JobState s : query.states) q.bind(i++, static_cast<int>(s));
    for (; label != query.labels.end(); ++label) {
      q.bind(i++, label->first);
      q.bind(i++, label->second);
    }
    q.bind(i++, query.page_size + 1);  // one more tells whether a next page exists
    JobPage page;
    int64_t last_seq = 0;
    while (q.executeStep()) {
      if (static_cast<int>(page.jobs.size()) == query.page_size) {
        page.next_page_token = EncodePageToken(last_seq);
        break;
      }
      last_seq = q.getColumn(0).getInt64();
      page.jobs.push_back(ParseColumn<v1::Job>(q.getColumn(1)));
    }
    return page;
  });
}

absl::StatusOr<std::vector<v1::Job>> JobStore::ListActiveJobs() {
  return Guarded("listing active jobs", [&]() -> absl::StatusOr<std::vector<v1::Job>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT job FROM jobs WHERE state IN (?, ?, ?, ?) ORDER BY seq");
    q.bind(1, static_cast<int>(v1::VALIDATING));
    q.bind(2, static_cast<int>(v1::QUEUED));
    q.bind(3, static_cast<int>(v1::RUNNING));
    q.bind(4, static_cast<int>(v1::CANCELLING));
    std::vector<v1::Job> jobs;
    while (q.executeStep()) jobs.push_back(ParseColumn<v1::Job>(q.getColumn(0)));
    return jobs;
  });
}

absl::StatusOr<std::map<v1::JobState, int64_t>> JobStore::CountJobsByState() {
  return Guarded("counting jobs", [&]() -> absl::StatusOr<std::map<v1::JobState, int64_t>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT state, COUNT(*) FROM jobs GROUP BY state");
    std::map<v1::JobState, int64_t> counts;
    while (q.executeStep()) {
      counts[static_cast<v1::JobState>(q.getColumn(0).getInt())] = q.getColumn(1).getInt64();
    }
    return counts;
  });
}

absl::StatusOr<std::vector<v1::JobEvent>> JobStore::ListEvents(const std::string& job_id,
                                                               int64_t after_event_id, int limit) {
  return Guarded("listing events", [&]() -> absl::StatusOr<std::vector<v1::JobEvent>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_,
                        "SELECT id, event FROM events WHERE job_id = ? AND id > ? ORDER BY id "
                        "LIMIT ?");
    q.bind(1, job_id);
    q.bind(2, after_event_id);
    q.bind(3, limit);
    std::vector<v1::JobEvent> events;
    while (q.executeStep()) {
      events.push_back(ParseColumn<v1::JobEvent>(q.getColumn(1)));
      events.back().set_id(q.getColumn(0).getInt64());
    }
    return events;
  });
}

absl::StatusOr<std::vector<v1::Checkpoint>> JobStore::ListCheckpoints(const std::string& job_id) {
  return Guarded("listing checkpoints", [&]() -> absl::StatusOr<std::vector<v1::Checkpoint>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_,
                        "SELECT checkpoint FROM checkpoints WHERE job_id = ? ORDER BY step, "
                        "attempt");
    q.bind(1, job_id);
    std::vector<v1::Checkpoint> out;
    while (q.executeStep()) out.push_back(ParseColumn<v1::Checkpoint>(q.getColumn(0)));
    return out;
  });
}

absl::StatusOr<std::optional<Artifact>> JobStore::GetArtifact(const std::string& job_id,
                                                              const std::string& kind) {
  return Guarded("reading an artifact", [&]() -> absl::StatusOr<std::optional<Artifact>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(
        *db_, "SELECT sha256, size_bytes, attempt FROM artifacts WHERE job_id = ? AND kind = ?");
    q.bind(1, job_id);
    q.bind(2, kind);
    if (!q.executeStep()) return std::optional<Artifact>();
    return std::optional<Artifact>(Artifact{job_id, kind, q.getColumn(0).getString(),
                                            q.getColumn(1).getInt64(), q.getColumn(2).getInt()});
  });
}

absl::StatusOr<std::set<std::string>> JobStore::ReferencedBlobs() {
  return Guarded("listing referenced blobs", [&]() -> absl::StatusOr<std::set<std::string>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_,
                        "SELECT sha256 FROM datasets UNION SELECT sha256 FROM checkpoints "
                        "UNION SELECT sha256 FROM artifacts");
    std::set<std::string> out;
    while (q.executeStep()) out.insert(q.getColumn(0).getString());
    return out;
  });
}

absl::StatusOr<v1::Dataset> JobStore::InsertDataset(const v1::Dataset& dataset) {
  return Guarded("recording a dataset", [&]() -> absl::StatusOr<v1::Dataset> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement q(*db_, "SELECT dataset FROM datasets WHERE id = ?");
    q.bind(1, dataset.id());
    if (q.executeStep()) return ParseColumn<v1::Dataset>(q.getColumn(0));
    SQLite::Statement ins(*db_,
                          "INSERT INTO datasets(id, sha256, create_time_us, dataset) "
                          "VALUES(?, ?, ?, ?)");
    ins.bind(1, dataset.id());
    ins.bind(2, dataset.sha256());
    ins.bind(3, ToMicros(dataset.create_time()));
    BindBlob(ins, 4, Serialize(dataset));
    ins.exec();
    tx.commit();
    return dataset;
  });
}

absl::StatusOr<v1::Dataset> JobStore::GetDataset(const std::string& dataset_id) {
  return Guarded("reading a dataset", [&]() -> absl::StatusOr<v1::Dataset> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT dataset FROM datasets WHERE id = ?");
    q.bind(1, dataset_id);
    if (!q.executeStep()) {
      return absl::NotFoundError(absl::StrCat("no dataset '", dataset_id, "'"));
    }
    return ParseColumn<v1::Dataset>(q.getColumn(0));
  });
}

absl::StatusOr<std::optional<v1::Dataset>> JobStore::FindDatasetBySha256(
    const std::string& sha256) {
  return Guarded("reading a dataset", [&]() -> absl::StatusOr<std::optional<v1::Dataset>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT dataset FROM datasets WHERE sha256 = ?");
    q.bind(1, sha256);
    if (!q.executeStep()) return std::optional<v1::Dataset>();
    return std::optional<v1::Dataset>(ParseColumn<v1::Dataset>(q.getColumn(0)));
  });
}

absl::StatusOr<std::vector<v1::Dataset>> JobStore::ListDatasets() {
  return Guarded("listing datasets", [&]() -> absl::StatusOr<std::vector<v1::Dataset>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT dataset FROM datasets ORDER BY create_time_us DESC, id");
    std::vector<v1::Dataset> out;
    while (q.executeStep()) out.push_back(ParseColumn<v1::Dataset>(q.getColumn(0)));
    return out;
  });
}

absl::Status JobStore::UpsertWorker(const v1::RegisterRequest& worker, absl::Time last_seen) {
  return Guarded("recording a worker", [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement ins(*db_,
                          "INSERT OR REPLACE INTO workers(id, last_seen_us, worker) "
                          "VALUES(?, ?, ?)");
    ins.bind(1, worker.worker_id());
    ins.bind(2, absl::ToUnixMicros(last_seen));
    BindBlob(ins, 3, Serialize(worker));
    ins.exec();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::RegisterRequest>> JobStore::ListWorkers() {
  return Guarded("listing workers", [&]() -> absl::StatusOr<std::vector<v1::RegisterRequest>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT worker FROM workers ORDER BY id");
    std::vector<v1::RegisterRequest> out;
    while (q.executeStep()) out.push_back(ParseColumn<v1::RegisterRequest>(q.getColumn(0)));
    return out;
  });
}

}  // namespace peftd::storage
