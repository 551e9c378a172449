// Helpers shared by the job store's files (job_store.cc, sweep_store.cc): rows hold serialized
// protos, and SQLiteCpp's exceptions become statuses. Not part of the store's contract.
#ifndef PEFTD_STORAGE_SQLITE_ROWS_H_
#define PEFTD_STORAGE_SQLITE_ROWS_H_

#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdint>
#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/timestamp.pb.h"

namespace peftd::storage::internal {

inline int64_t ToMicros(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000000 + t.nanos() / 1000;
}

template <typename M>
std::string Serialize(const M& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

template <typename M>
M ParseColumn(const SQLite::Column& c) {
  M m;
  m.ParseFromArray(c.getBlob(), c.getBytes());
  return m;
}

inline void BindBlob(SQLite::Statement& s, int index, const std::string& bytes) {
  s.bind(index, bytes.data(), static_cast<int>(bytes.size()));
}

// Runs `fn`, turning SQLiteCpp's exceptions into a status naming what was being done.
template <typename Fn>
auto Guarded(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const SQLite::Exception& e) {
    return absl::InternalError(absl::StrCat("job store: ", what, ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("job store: ", what, ": ", e.what()));
  }
}

}  // namespace peftd::storage::internal

#endif  // PEFTD_STORAGE_SQLITE_ROWS_H_
