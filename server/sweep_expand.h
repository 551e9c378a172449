// A sweep's axes expanded into its children's specs (docs/sweeps.md): each axis names a JobSpec
// field by its proto path and lists values as text; GRID takes every combination, LIST the i-th
// value of every axis. Only the sweep's own shape is checked here (fields exist, values parse, the
// number of children); each child spec is then admitted like any job by the scheduler.
#ifndef PEFTD_SERVER_SWEEP_EXPAND_H_
#define PEFTD_SERVER_SWEEP_EXPAND_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "peftd/v1/sweep.pb.h"

namespace peftd::server {

// One child of a sweep: its spec (the base with the child's values set) and those values.
struct SweepPoint {
  v1::JobSpec spec;
  std::vector<v1::SweepAssignment> assignments;
};

// Sets the JobSpec field at `path` ("token_gate.lambda", "lora.r", "method", "target_modules")
// from `value` (docs/sweeps.md, "Values"). Setting `method` drops method parameters of another
// method, as `peftctl submit --method` does. InvalidArgument saying what is wrong with the path
// or the value (the caller prefixes where it came from).
absl::Status SetSpecField(v1::JobSpec* spec, const std::string& path, const std::string& value);

// The children of `spec`, in order: for GRID the last axis varies fastest. InvalidArgument naming
// the field ("spec.axes[1].values[0]: ...") for an unknown field, a value that does not parse,
// an axis given twice or without values, LIST axes of different lengths, or more than
// `max_children` children.
absl::StatusOr<std::vector<SweepPoint>> ExpandSweep(const v1::SweepSpec& spec, int max_children);

// "lora.r=8, token_gate.lambda=1e-06": a child's values, for messages and tables.
std::string DescribeAssignments(const std::vector<v1::SweepAssignment>& assignments);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_SWEEP_EXPAND_H_
