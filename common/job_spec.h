// The job spec's defaults and validation, in one place for the server (at submit time) and the
// worker (before training), so both read an unset field the same way.
#ifndef PEFTD_COMMON_JOB_SPEC_H_
#define PEFTD_COMMON_JOB_SPEC_H_

#include "absl/status/status.h"
#include "peftd/v1/job.pb.h"

namespace peftd {

// Returns `spec` with every unset field replaced by its documented default (see job.proto).
// AdaDHP's target_num and tfinal depend on the model and the step count; they stay 0 here and
// are resolved by the worker.
v1::JobSpec WithDefaults(const v1::JobSpec& spec);

// Checks a spec (after WithDefaults) on its own, without the model or the datasets.
// InvalidArgument whose message starts with the offending field path, e.g.
// "adalora.tfinal: tinit (100) must be < max_steps - tfinal (50)".
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

}  // namespace peftd

#endif  // PEFTD_COMMON_JOB_SPEC_H_
