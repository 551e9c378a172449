// Status helpers shared by every box: early-return macros for absl::Status / absl::StatusOr and the
// single place where an absl::Status becomes a grpc::Status (see status_grpc.h).
#ifndef PEFTD_COMMON_STATUS_H_
#define PEFTD_COMMON_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PEFTD_STATUS_CONCAT_INNER_(a, b) a##b
#define PEFTD_STATUS_CONCAT_(a, b) PEFTD_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function when not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status peftd_status_ = (expr);         \
    if (!peftd_status_.ok()) return peftd_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error returns its
// status, otherwise moves the value into `lhs` (which may be a declaration such as `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  PEFTD_ASSIGN_OR_RETURN_IMPL_(PEFTD_STATUS_CONCAT_(peftd_statusor_, __LINE__), lhs, expr)

#define PEFTD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace peftd {

// Prefixes the message of a non-OK status with `context` ("loading config.json: ...").
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace peftd

#endif  // PEFTD_COMMON_STATUS_H_
