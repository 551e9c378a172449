// JobStore: the sweeps table (schema step 5) and the jobs of a sweep.
#include <SQLiteCpp/SQLiteCpp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/job_store.h"
#include "storage/sqlite_rows.h"

namespace peftd::storage {
namespace {

using internal::BindBlob;
using internal::Guarded;
using internal::ParseColumn;
using internal::Serialize;
using internal::ToMicros;

}  // namespace

absl::StatusOr<v1::Sweep> JobStore::InsertSweep(const v1::Sweep& sweep,
                                                const std::vector<NewJob>& children,
                                                bool* existed) {
  return Guarded("inserting a sweep", [&]() -> absl::StatusOr<v1::Sweep> {
    std::lock_guard<std::mutex> lock(mu_);
    *existed = false;
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!sweep.request_id().empty()) {
      SQLite::Statement q(*db_, "SELECT sweep FROM sweeps WHERE request_id = ?");
      q.bind(1, sweep.request_id());
      if (q.executeStep()) {
        *existed = true;
        return ParseColumn<v1::Sweep>(q.getColumn(0));
      }
    }
    SQLite::Statement ins(*db_,
                          "INSERT INTO sweeps(id, request_id, create_time_us, sweep) "
                          "VALUES(?, ?, ?, ?)");
    ins.bind(1, sweep.id());
    if (sweep.request_id().empty()) {
      ins.bind(2);
    } else {
      ins.bind(2, sweep.request_id());
    }
    ins.bind(3, ToMicros(sweep.create_time()));
    BindBlob(ins, 4, Serialize(sweep));
    ins.exec();
    for (const NewJob& child : children) InsertJobRowLocked(child.job, child.events);
    tx.commit();
    return sweep;
  });
}

absl::StatusOr<v1::Sweep> JobStore::GetSweep(const std::string& sweep_id) {
  return Guarded("reading a sweep", [&]() -> absl::StatusOr<v1::Sweep> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT sweep FROM sweeps WHERE id = ?");
    q.bind(1, sweep_id);
    if (!q.executeStep()) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    return ParseColumn<v1::Sweep>(q.getColumn(0));
  });
}

absl::Status JobStore::UpdateSweep(const v1::Sweep& sweep) {
  return Guarded("updating a sweep", [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement up(*db_, "UPDATE sweeps SET sweep = ? WHERE id = ?");
    BindBlob(up, 1, Serialize(sweep));
    up.bind(2, sweep.id());
    if (up.exec() == 0) return absl::NotFoundError(absl::StrCat("no sweep '", sweep.id(), "'"));
    return absl::OkStatus();
  });
}

absl::StatusOr<SweepPage> JobStore::ListSweeps(int page_size, const std::string& page_token) {
  int64_t before = 0;
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(before, DecodePageToken(page_token, "sweeps"));
  }
  return Guarded("listing sweeps", [&]() -> absl::StatusOr<SweepPage> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, before > 0
                                  ? "SELECT seq, sweep FROM sweeps WHERE seq < ? "
                                    "ORDER BY seq DESC LIMIT ?"
                                  : "SELECT seq, sweep FROM sweeps ORDER BY seq DESC LIMIT ?");
    int i = 1;
    if (before > 0) q.bind(i++, before);
    q.bind(i, page_size + 1);  // one more tells whether a next page exists
    SweepPage page;
    int64_t last_seq = 0;
    while (q.executeStep()) {
      if (static_cast<int>(page.sweeps.size()) == page_size) {
        page.next_page_token = EncodePageToken(last_seq, "sweeps");
        break;
      }
      last_seq = q.getColumn(0).getInt64();
      page.sweeps.push_back(ParseColumn<v1::Sweep>(q.getColumn(1)));
    }
    return page;
  });
}

absl::StatusOr<std::vector<v1::Job>> JobStore::ListSweepJobs(const std::string& sweep_id) {
  return Guarded("listing the jobs of a sweep", [&]() -> absl::StatusOr<std::vector<v1::Job>> {
    std::lock_guard<std::mutex> lock(mu_);
    SQLite::Statement q(*db_, "SELECT job FROM jobs WHERE sweep_id = ? ORDER BY seq");
    q.bind(1, sweep_id);
    std::vector<v1::Job> jobs;
    while (q.executeStep()) jobs.push_back(ParseColumn<v1::Job>(q.getColumn(0)));
    return jobs;
  });
}

}  // namespace peftd::storage
