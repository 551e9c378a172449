// Admission of JobSpec.init_from (docs/job-spec.md, "Continue training"): the job to start from
// exists and has ended, has the adapter or kept checkpoint asked for, and trained weights of the
// same shapes: same base model, method, gate, rank and adapted modules, same task and labels.
#ifndef PEFTD_SERVER_INIT_FROM_CHECK_H_
#define PEFTD_SERVER_INIT_FROM_CHECK_H_

#include "absl/status/status.h"
#include "common/job_spec_model.h"
#include "server/job_admission.h"

namespace peftd::server {

// `spec` (after WithDefaults and ValidateJobSpec, with init_from set) resolved on its model as
// `resolved`. NotFound "init_from.job: no job ..."; FailedPrecondition naming init_from.job or
// init_from.step when the job has not ended, has no adapter or keeps no such checkpoint;
// InvalidArgument "init_from: ..." naming the first thing that differs.
absl::Status CheckInitFrom(const v1::JobSpec& spec, const SpecOnModel& resolved,
                           const model::ModelConfig& config, AdmissionSources& sources);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_INIT_FROM_CHECK_H_
