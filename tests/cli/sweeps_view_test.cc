#include "clients/cli/sweeps_view.h"

#include <gtest/gtest.h>

#include <tuple>
#include <vector>

#include "absl/strings/match.h"

namespace peftd::cli {
namespace {

TEST(SweepsView, ParsesAxesAndRefusesMalformedOnes) {
  auto axis = ParseAxis("token_gate.lambda=1e-6, 1e-5", "--grid");
  ASSERT_TRUE(axis.ok());
  EXPECT_EQ(axis->field(), "token_gate.lambda");
  ASSERT_EQ(axis->values_size(), 2);
  EXPECT_EQ(axis->values(1), "1e-5");
  auto modules = ParseAxis("target_modules=q_proj+v_proj,q_proj", "--grid");
  ASSERT_EQ(modules->values_size(), 2);
  EXPECT_EQ(modules->values(0), "q_proj+v_proj");
  for (const char* bad : {"lora.r", "=4", "lora.r="}) {
    auto r = ParseAxis(bad, "--list");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), "--list: expected FIELD=V1,V2"))
        << r.status().message();
  }
}

TEST(SweepsView, TheProgressLineCountsChildrenAndTheStepsOfThoseStarted) {
  v1::Sweep s;
  const std::vector<std::tuple<v1::JobState, int64_t, int64_t>> children = {
      {v1::SUCCEEDED, 60, 60}, {v1::RUNNING, 30, 60}, {v1::QUEUED, 0, 0}, {v1::QUEUED, 0, 0}};
  for (const auto& [state, step, total] : children) {
    v1::SweepChild* c = s.add_children();
    c->set_state(state);
    c->set_step(step);
    c->set_total_steps(total);
  }
  EXPECT_EQ(FormatSweepProgress(s),
            "progress: 1/4 ended, 1 running, 2 queued; steps 90/120 (75%) of the 2 started");
  for (v1::SweepChild& c : *s.mutable_children()) c.set_state(v1::QUEUED), c.set_total_steps(0);
  EXPECT_EQ(FormatSweepProgress(s), "progress: 0/4 ended, 0 running, 4 queued");
}

TEST(SweepsView, ParsesMetrics) {
  EXPECT_EQ(*ParseSweepMetric("gate-sparsity"), v1::GATE_SPARSITY);
  EXPECT_EQ(*ParseSweepMetric("EVAL_LOSS"), v1::EVAL_LOSS);
  EXPECT_FALSE(ParseSweepMetric("loss").ok());
  EXPECT_FALSE(ParseSweepMetric("sweep_metric_unspecified").ok());
}

TEST(SweepsView, TheTableMarksTheBestChildAndShowsAccuracyForClassifiers) {
  v1::Sweep s;
  s.set_id("sweep-1");
  s.set_state(v1::SWEEP_SUCCEEDED);
  s.set_metric(v1::EVAL_LOSS);
  s.set_best_job_id("job-b");
  for (auto [id, loss] : {std::pair<const char*, double>{"job-a", 2.5}, {"job-b", 1.25}}) {
    v1::SweepChild* c = s.add_children();
    c->set_index(s.children_size() - 1);
    c->set_job_id(id);
    auto* a = c->add_assignments();
    a->set_field("lora.r");
    a->set_value(c->index() == 0 ? "4" : "8");
    c->set_state(v1::SUCCEEDED);
    c->set_step(10);
    c->set_total_steps(10);
    c->set_has_eval(true);
    c->set_eval_loss(loss);
    c->set_eval_accuracy(0.5);
    c->set_gate_sparsity(0.25);
    c->set_trainable_percent(0.4);
    c->set_tokens_per_second(17600);
    c->set_wall_time_seconds(31);
  }
  const std::string out = FormatSweepDetails(s, absl::Now());
  EXPECT_TRUE(absl::StrContains(out, "state:        succeeded\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "children:     2/2 ended\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "metric:       eval_loss (lowest wins)\n")) << out;
  EXPECT_TRUE(absl::StrContains(
      out, "*  1  job-b  lora.r=8  succeeded  10/10  1.2500     25.0%     0.40%      17.6k  31s"))
      << out;
  EXPECT_TRUE(absl::StrContains(out, "   0  job-a  lora.r=4  succeeded  10/10  2.5000  ")) << out;
  s.set_metric(v1::EVAL_ACCURACY);
  EXPECT_TRUE(absl::StrContains(FormatSweepDetails(s, absl::Now()), "EVAL ACC"));
  EXPECT_TRUE(absl::StrContains(FormatSweepDetails(s, absl::Now()), "50.0%"));
  EXPECT_EQ(SweepListRow(s, absl::Now())[3], "2/2");
}

}  // namespace
}  // namespace peftd::cli
