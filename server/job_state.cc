#include "server/job_state.h"

#include "absl/strings/str_cat.h"

namespace peftd::server {

bool IsFinal(v1::JobState s) { return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED; }

bool CanTransition(v1::JobState from, v1::JobState to) {
  switch (from) {
    case v1::VALIDATING:
      return to == v1::QUEUED || to == v1::FAILED || to == v1::CANCELLED;
    case v1::QUEUED:
      return to == v1::RUNNING || to == v1::CANCELLED || to == v1::FAILED;
    case v1::RUNNING:
      return to == v1::SUCCEEDED || to == v1::FAILED || to == v1::CANCELLING || to == v1::QUEUED;
    case v1::CANCELLING:
      return to == v1::CANCELLED || to == v1::FAILED || to == v1::SUCCEEDED;
    default:
      return false;  // final states and UNSPECIFIED
  }
}

absl::Status CheckTransition(v1::JobState from, v1::JobState to) {
  if (CanTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("a job in state ", v1::JobState_Name(from),
                                                    " cannot become ", v1::JobState_Name(to)));
}

}  // namespace peftd::server
