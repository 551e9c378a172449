#include "server/sweep_view.h"

#include <gtest/gtest.h>

#include "server/scheduler_internal.h"

namespace peftd::server {
namespace {

using internal::ToProto;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

v1::Sweep Stored(int children) {
  v1::Sweep s;
  s.set_id("sweep-1");
  s.mutable_spec()->mutable_base()->mutable_token_gate()->set_enabled(true);
  for (int i = 0; i < children; ++i) {
    auto* c = s.add_children();
    c->set_index(i);
    c->set_job_id("job-" + std::to_string(i));
  }
  return s;
}

v1::Job Job(int i, v1::JobState state, double eval_loss, bool has_eval = true) {
  v1::Job j;
  j.set_id("job-" + std::to_string(i));
  j.set_state(state);
  j.mutable_spec()->mutable_token_gate()->set_enabled(true);
  j.mutable_progress()->set_step(10);
  j.mutable_progress()->set_has_eval(has_eval);
  j.mutable_progress()->set_eval_loss(eval_loss);
  j.mutable_progress()->set_eval_accuracy(1.0 - eval_loss / 10);
  j.mutable_progress()->set_gate_sparsity(0.1 * i);
  j.set_trainable_parameters(25);
  j.set_total_parameters(1000);
  *j.mutable_start_time() = ToProto(kT0);
  if (state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED) {
    *j.mutable_end_time() = ToProto(kT0 + absl::Seconds(30 + i));
  }
  return j;
}

TEST(SweepView, TheBestIsTheSucceededChildWithTheLowestEvalLoss) {
  const v1::Sweep view =
      BuildSweepView(Stored(4),
                     {Job(0, v1::SUCCEEDED, 2.0), Job(1, v1::SUCCEEDED, 1.5),
                      Job(2, v1::FAILED, 0.5), Job(3, v1::SUCCEEDED, 1.0, /*has_eval=*/false)},
                     kT0 + absl::Minutes(5));
  EXPECT_EQ(view.metric(), v1::EVAL_LOSS);
  EXPECT_EQ(view.best_job_id(), "job-1");
  EXPECT_EQ(view.state(), v1::SWEEP_SUCCEEDED);
  ASSERT_EQ(view.children_size(), 4);
  EXPECT_DOUBLE_EQ(view.children(1).eval_loss(), 1.5);
  EXPECT_DOUBLE_EQ(view.children(1).trainable_percent(), 2.5);
  EXPECT_DOUBLE_EQ(view.children(1).wall_time_seconds(), 31);
  EXPECT_EQ(view.children(2).state(), v1::FAILED);
}

TEST(SweepView, HigherIsBetterForAccuracyAndSparsity) {
  v1::Sweep stored = Stored(3);
  stored.mutable_spec()->set_metric(v1::EVAL_ACCURACY);
  std::vector<v1::Job> jobs = {Job(0, v1::SUCCEEDED, 2.0), Job(1, v1::SUCCEEDED, 1.0),
                               Job(2, v1::SUCCEEDED, 3.0)};
  EXPECT_EQ(BuildSweepView(stored, jobs, kT0).best_job_id(), "job-1");
  stored.mutable_spec()->set_metric(v1::GATE_SPARSITY);
  EXPECT_EQ(BuildSweepView(stored, jobs, kT0).best_job_id(), "job-2");
  stored.mutable_spec()->set_metric(v1::WALL_TIME);
  EXPECT_EQ(BuildSweepView(stored, jobs, kT0).best_job_id(), "job-0");
  // Without the gate, sparsity names no child.
  for (auto& j : jobs) j.mutable_spec()->mutable_token_gate()->set_enabled(false);
  stored.mutable_spec()->set_metric(v1::GATE_SPARSITY);
  EXPECT_EQ(BuildSweepView(stored, jobs, kT0).best_job_id(), "");
}

TEST(SweepView, TheDefaultMetricOfAClassifierIsAccuracy) {
  v1::SweepSpec spec;
  spec.mutable_base()->set_task(v1::SEQ_CLS);
  EXPECT_EQ(ResolvedMetric(spec), v1::EVAL_ACCURACY);
}

TEST(SweepView, TheStateFollowsTheChildrenAndTheCancel) {
  v1::Sweep stored = Stored(2);
  const absl::Time now = kT0 + absl::Seconds(12);
  v1::Sweep view =
      BuildSweepView(stored, {Job(0, v1::SUCCEEDED, 1), Job(1, v1::RUNNING, 0.1)}, now);
  EXPECT_EQ(view.state(), v1::SWEEP_RUNNING);
  // A running child is never best, and its wall time runs to now.
  EXPECT_EQ(view.best_job_id(), "job-0");
  EXPECT_DOUBLE_EQ(view.children(1).wall_time_seconds(), 12);
  EXPECT_EQ(BuildSweepView(stored, {Job(0, v1::FAILED, 1), Job(1, v1::CANCELLED, 1)}, now).state(),
            v1::SWEEP_FAILED);
  stored.set_cancel_requested(true);
  EXPECT_EQ(
      BuildSweepView(stored, {Job(0, v1::SUCCEEDED, 1), Job(1, v1::CANCELLING, 1)}, now).state(),
      v1::SWEEP_CANCELLING);
  EXPECT_EQ(
      BuildSweepView(stored, {Job(0, v1::SUCCEEDED, 1), Job(1, v1::CANCELLED, 1)}, now).state(),
      v1::SWEEP_CANCELLED);
}

}  // namespace
}  // namespace peftd::server
