// The job spec's defaults and validation, in one place for the server (at submit time) and the
// worker (before training), so both read an unset field the same way.
#ifndef PEFTD_COMMON_JOB_SPEC_H_
#define PEFTD_COMMON_JOB_SPEC_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "peftd/v1/job.pb.h"

namespace peftd {

// The method_params case that belongs to `method` (LoRA and DoRA share `lora`); NOT_SET for an
// unspecified method.
v1::JobSpec::MethodParamsCase MethodParamsCaseOf(v1::Method method);

// Returns `spec` with every unset field replaced by its documented default (see job.proto).
// AdaDHP's target_num and tfinal depend on the model and the step count; they stay 0 here and
// are resolved by the worker.
v1::JobSpec WithDefaults(const v1::JobSpec& spec);

// Checks a spec (after WithDefaults) on its own, without the model or the datasets: every
// numeric field within its documented range (JobSpecRanges), no NaN or infinity in any float or
// double field, module patterns compiled (common/module_pattern.h), strings and lists within
// their caps, and the rules between fields. InvalidArgument whose message starts with the
// offending field path and names the allowed range, e.g.
// "lora.r: must be in [1, 4096], got 2000000000" or
// "adalora.tinit: tinit (100) must be < max_steps - tfinal (50): no step would prune".
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// The allowed range of one numeric field of JobSpec or of its parameter messages ("lora.r").
// Caps sit far above any real job; docs/job-spec.md states the same ranges (a test compares).
struct FieldRange {
  const char* field;  // path: "batch_size", "lora.r", "layers_to_transform" (each entry)
  double min;
  double max;
  bool min_open = false;  // (min, ...: min itself is refused
  bool max_open = false;  // ..., max): max itself is refused
};
const std::vector<FieldRange>& JobSpecRanges();
// "[1, 4096]", "(0, 1000000]", "[0, 1)".
std::string RangeText(const FieldRange& range);
// Numeric fields with no range at all (any value of their type is fine): "seed".
const std::vector<std::string>& UnboundedJobSpecFields();

}  // namespace peftd

#endif  // PEFTD_COMMON_JOB_SPEC_H_
