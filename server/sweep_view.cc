#include "server/sweep_view.h"

#include <map>
#include <optional>
#include <string>

#include "server/job_state.h"
#include "server/scheduler_internal.h"

namespace peftd::server {
namespace {

using internal::FromProto;

void FillRow(const v1::Job& job, absl::Time now, v1::SweepChild* row) {
  const v1::JobProgress& p = job.progress();
  row->set_state(job.state());
  row->set_step(p.step());
  row->set_total_steps(p.total_steps());
  row->set_has_eval(p.has_eval());
  row->set_eval_loss(p.eval_loss());
  row->set_eval_accuracy(p.eval_accuracy());
  row->set_train_loss(p.train_loss());
  row->set_gate_sparsity(p.gate_sparsity());
  row->set_tokens_per_second(p.tokens_per_second());
  if (job.total_parameters() > 0) {
    row->set_trainable_percent(100.0 * static_cast<double>(job.trainable_parameters()) /
                               static_cast<double>(job.total_parameters()));
  }
  if (job.has_start_time()) {
    const absl::Time end = job.has_end_time() ? FromProto(job.end_time()) : now;
    row->set_wall_time_seconds(absl::ToDoubleSeconds(end - FromProto(job.start_time())));
  }
}

// The child's value of `metric`, when it has one.
std::optional<double> MetricOf(const v1::SweepChild& row, const v1::Job& job,
                               v1::SweepMetric metric) {
  switch (metric) {
    case v1::EVAL_ACCURACY:
      if (!row.has_eval()) return std::nullopt;
      return row.eval_accuracy();
    case v1::TRAIN_LOSS:
      if (row.step() == 0) return std::nullopt;
      return row.train_loss();
    case v1::GATE_SPARSITY:
      if (!job.spec().token_gate().enabled()) return std::nullopt;
      return row.gate_sparsity();
    case v1::TOKENS_PER_SECOND:
      return row.tokens_per_second();
    case v1::WALL_TIME:
      return row.wall_time_seconds();
    default:
      if (!row.has_eval()) return std::nullopt;
      return row.eval_loss();
  }
}

}  // namespace

v1::SweepMetric ResolvedMetric(const v1::SweepSpec& spec) {
  if (spec.metric() != v1::SWEEP_METRIC_UNSPECIFIED) return spec.metric();
  return spec.base().task() == v1::SEQ_CLS ? v1::EVAL_ACCURACY : v1::EVAL_LOSS;
}

bool HigherIsBetter(v1::SweepMetric metric) {
  return metric == v1::EVAL_ACCURACY || metric == v1::GATE_SPARSITY ||
         metric == v1::TOKENS_PER_SECOND;
}

v1::Sweep BuildSweepView(const v1::Sweep& stored, const std::vector<v1::Job>& jobs,
                         absl::Time now) {
  v1::Sweep view = stored;
  view.set_metric(ResolvedMetric(stored.spec()));
  std::map<std::string, const v1::Job*> by_id;
  for (const v1::Job& job : jobs) by_id[job.id()] = &job;
  bool all_final = true, any_succeeded = false;
  std::optional<double> best;
  for (v1::SweepChild& row : *view.mutable_children()) {
    auto it = by_id.find(row.job_id());
    if (it == by_id.end()) {
      all_final = false;
      continue;
    }
    const v1::Job& job = *it->second;
    FillRow(job, now, &row);
    if (!IsFinal(job.state())) all_final = false;
    if (job.state() != v1::SUCCEEDED) continue;
    any_succeeded = true;
    const std::optional<double> value = MetricOf(row, job, view.metric());
    if (!value) continue;
    const bool better = !best || (HigherIsBetter(view.metric()) ? *value > *best : *value < *best);
    if (better) {
      best = value;
      view.set_best_job_id(job.id());
    }
  }
  if (all_final) {
    view.set_state(stored.cancel_requested() ? v1::SWEEP_CANCELLED
                   : any_succeeded           ? v1::SWEEP_SUCCEEDED
                                             : v1::SWEEP_FAILED);
  } else {
    view.set_state(stored.cancel_requested() ? v1::SWEEP_CANCELLING : v1::SWEEP_RUNNING);
  }
  return view;
}

}  // namespace peftd::server
