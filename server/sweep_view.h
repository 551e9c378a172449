// What GetSweep returns: the stored sweep row (spec, children's ids and values) joined with its
// children's jobs into the comparison table, the sweep's state and its best child
// (docs/sweeps.md, "The table"). Pure: no store, no clock but `now`.
#ifndef PEFTD_SERVER_SWEEP_VIEW_H_
#define PEFTD_SERVER_SWEEP_VIEW_H_

#include <vector>

#include "absl/time/time.h"
#include "peftd/v1/sweep.pb.h"

namespace peftd::server {

// The metric that picks the best child: spec.metric, or by default EVAL_LOSS (EVAL_ACCURACY when
// the base task is SEQ_CLS).
v1::SweepMetric ResolvedMetric(const v1::SweepSpec& spec);

// True when a larger value of `metric` is better.
bool HigherIsBetter(v1::SweepMetric metric);

// `stored` with every child's row filled from `jobs` (matched by id; a child whose job is missing
// keeps an unset state), the state derived from the children and cancel_requested, and
// best_job_id: the SUCCEEDED child with the best value of the metric, ties to the lower index.
// A child without the metric (no evaluation yet, no gate) is never best. `now` ends the wall time
// of children that are still running.
v1::Sweep BuildSweepView(const v1::Sweep& stored, const std::vector<v1::Job>& jobs, absl::Time now);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_SWEEP_VIEW_H_
