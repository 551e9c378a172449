// ResolveInitSource (scheduler_internal.h): where a job's init_from weights are in the blob store.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/scheduler_internal.h"

namespace peftd::server::internal {

absl::StatusOr<v1::InitSource> ResolveInitSource(storage::JobStore& store,
                                                 const v1::InitFrom& init) {
  v1::InitSource source;
  source.set_job_id(init.job());
  source.set_step(init.step());
  if (init.step() == 0) {
    ASSIGN_OR_RETURN(std::optional<storage::Artifact> adapter,
                     store.GetArtifact(init.job(), "adapter"));
    if (!adapter) {
      return absl::FailedPreconditionError(
          absl::StrCat("init_from.job: job ", init.job(), " has no adapter"));
    }
    source.set_sha256(adapter->sha256);
    source.set_adapter(true);
    return source;
  }
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, store.ListCheckpoints(init.job()));
  for (const v1::Checkpoint& cp : checkpoints) {  // by step, then attempt: the last match is newest
    if (cp.step() == init.step()) source.set_sha256(cp.sha256());
  }
  if (source.sha256().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "init_from.step: job ", init.job(), " keeps no checkpoint of step ", init.step()));
  }
  return source;
}

}  // namespace peftd::server::internal
