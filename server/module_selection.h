// JobSpec.selection (docs/job-spec.md, "Module selection"): the target modules of a job chosen
// from an earlier job by the paper's criteria (TS-PEFT §5): the fraction or number of that job's
// modules with the lowest or highest gate sparsity, the highest mean ‖M(x)‖/‖W0 x‖ or ‖M(x)‖
// (JobProgress.module_norms), or a seeded random choice. Resolved at submit into explicit module
// names, so the stored spec reproduces the run.
#ifndef PEFTD_SERVER_MODULE_SELECTION_H_
#define PEFTD_SERVER_MODULE_SELECTION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/job_admission.h"

namespace peftd::server {

// The full names of the chosen modules, in model order. `spec` has selection set and no
// target_modules. InvalidArgument naming the selection field (a missing from_job or criterion,
// neither or both of fraction and top_k, more modules than there are, another base model);
// NotFound for a from_job that does not exist; FailedPrecondition for one that has not SUCCEEDED
// or, for the sparsity criteria, recorded no gate sparsity (for the norm criteria, no norms).
absl::StatusOr<std::vector<std::string>> SelectModules(const v1::JobSpec& spec,
                                                       AdmissionSources& sources);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_MODULE_SELECTION_H_
