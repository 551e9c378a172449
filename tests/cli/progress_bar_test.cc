// Progress lines are pure functions of the numbers and the width: tested as exact strings.
#include "clients/cli/progress_bar.h"

#include <gtest/gtest.h>

#include <set>

#include "absl/strings/match.h"

namespace peftd::cli {
namespace {

v1::JobProgress Sample() {
  v1::JobProgress p;
  p.set_step(40);
  p.set_total_steps(100);
  p.set_train_loss(1.2345);
  p.set_has_eval(true);
  p.set_eval_loss(1.301);
  p.set_tokens_per_second(1200);
  p.set_gate_sparsity(0.35);
  p.set_eta_seconds(80);
  return p;
}

TEST(RenderBar, FillsByFraction) {
  EXPECT_EQ(RenderBar(0, 10), "[          ]");
  EXPECT_EQ(RenderBar(0.4, 10), "[====>     ]");
  EXPECT_EQ(RenderBar(0.05, 10), "[>         ]");
  EXPECT_EQ(RenderBar(1, 10), "[==========]");
  EXPECT_EQ(RenderBar(7, 4), "[====]");
  EXPECT_EQ(RenderBar(-1, 4), "[    ]");
}

TEST(RenderJobProgress, WideTerminalShowsEverything) {
  EXPECT_EQ(RenderJobProgress(Sample(), "running/training", 150),
            "running/training       [============>                 ]   40/100   40%  "
            "loss 1.2345  eval 1.3010  1.20k tok/s  sparsity 35.0%  tau -        ETA 1m20s");
}

TEST(RenderJobProgress, BarTakesTheRoomLeft) {
  // 120 columns without a label: the fields take 95 with separators, the bar the rest.
  std::string line = RenderJobProgress(Sample(), "", 120);
  EXPECT_EQ(line,
            "[=========>             ]   40/100   40%  loss 1.2345  eval 1.3010  1.20k tok/s  "
            "sparsity 35.0%  tau -        ETA 1m20s");
  EXPECT_EQ(line.size(), 119u);  // the last field's padding is not printed
}

TEST(RenderJobProgress, NarrowTerminalDropsLeastUsefulFirst) {
  std::string line = RenderJobProgress(Sample(), "running/training", 60);
  EXPECT_LE(line.size(), 60u);
  // tok/s, the label, the percentage, eval, tau and sparsity went; the bar takes the room left.
  EXPECT_EQ(line, "[=========>              ]   40/100  loss 1.2345  ETA 1m20s");
  std::string tiny = RenderJobProgress(Sample(), "running/training", 30);
  EXPECT_LE(tiny.size(), 30u);
  EXPECT_EQ(tiny, "[=======>           ]   40/100");
  EXPECT_EQ(RenderJobProgress(Sample(), "x", 12), " 40/100");
  for (int width = 1; width < 160; ++width) {
    EXPECT_LE(RenderJobProgress(Sample(), "running/training", width).size(),
              static_cast<size_t>(width));
  }
}

TEST(RenderJobProgress, UnknownTotalAndNoGateNoEval) {
  v1::JobProgress p;
  p.set_step(7);
  p.set_train_loss(2.5);
  ProgressStyle ended;
  ended.live = false;
  EXPECT_EQ(RenderJobProgress(p, "", 60, ended),
            "[                                 ]  step 7      loss 2.5000");
  v1::JobProgress before_first_step;
  before_first_step.set_total_steps(10);
  // Rate and ETA are not known yet, but their room is kept for them.
  EXPECT_EQ(RenderJobProgress(before_first_step, "running/loading_model", 80),
            "running/loading_model  [                 ]   0/10    0%  loss -");
}

// A gated job on an 80-column terminal (79 usable): the gate's numbers stay, tok/s and the label
// go first. Before, sparsity was the second field dropped and vanished at 80 columns.
TEST(RenderJobProgress, GateSurvivesEightyColumns) {
  v1::JobProgress p = Sample();
  p.set_has_eval(false);
  auto* gate = p.add_gates();
  gate->set_tau(0.0123);
  gate->set_sparsity(0.35);
  ProgressStyle gated;
  gated.gated = true;
  const std::string line = RenderJobProgress(p, "running/training", 79, gated);
  EXPECT_LE(line.size(), 79u);
  EXPECT_TRUE(absl::StrContains(line, "sparsity 35.0%")) << line;
  EXPECT_TRUE(absl::StrContains(line, "tau 0.0123")) << line;
  // 0% is shown too: a gate that stays open is worth seeing.
  p.set_gate_sparsity(0);
  EXPECT_TRUE(absl::StrContains(RenderJobProgress(p, "", 79, gated), "sparsity 0.0%"));
}

// The layout depends on the style and the width only: numbers of any length, fields appearing
// (the first eval, the first rate) and the phase changing keep the bar where it is.
TEST(RenderJobProgress, BarWidthIsStableAcrossRedraws) {
  ProgressStyle style;
  style.gated = true;
  style.has_validation = true;
  std::set<size_t> bar_ends, loss_starts;
  const char* labels[] = {"running/loading_model", "running/training", "running/checkpointing"};
  for (int step = 0; step <= 1000; step += 50) {
    v1::JobProgress p;
    p.set_step(step);
    p.set_total_steps(1000);
    if (step > 0) p.set_train_loss(20.0 / (step * step));    // 0.00002 .. 0.008
    if (step >= 100) p.set_train_loss(12.5 - step / 100.0);  // two-digit losses too
    if (step >= 200) {
      p.set_has_eval(true);
      p.set_eval_loss(1.5);
    }
    if (step > 0) p.set_tokens_per_second(step * 37.0);
    if (step > 0 && step < 1000) p.set_eta_seconds((1000 - step) * 9.0);
    p.set_gate_sparsity(step / 2000.0);
    const std::string line = RenderJobProgress(p, labels[step / 50 % 3], 120, style);
    bar_ends.insert(line.find(']'));
    loss_starts.insert(line.find("loss "));
  }
  EXPECT_EQ(bar_ends.size(), 1u);
  EXPECT_EQ(loss_starts.size(), 1u);
}

// The widest values of a field fit its room: "ETA 10m43s" and "tau 0.00245" were cut at the
// line's end on a real terminal.
TEST(RenderJobProgress, WideValuesAreNotCut) {
  v1::JobProgress p = Sample();
  p.set_eta_seconds(643);
  p.add_gates()->set_tau(0.00245);
  ProgressStyle gated;
  gated.gated = true;
  for (int width : {79, 150}) {
    const std::string line = RenderJobProgress(p, "running/checkpointing", width, gated);
    EXPECT_TRUE(absl::StrContains(line, "ETA 10m43s")) << line;
    EXPECT_TRUE(absl::StrContains(line, "tau 0.00245")) << line;
  }
}

TEST(RenderJobProgress, LossesHaveFourDecimals) {
  v1::JobProgress p = Sample();
  for (double loss : {12.5, 1.0, 0.01234, 3.14159}) {
    p.set_train_loss(loss);
    const std::string line = RenderJobProgress(p, "", 200);
    const std::string text =
        line.substr(line.find("loss ") + 5, line.find("  eval") - line.find("loss ") - 5);
    ASSERT_NE(text.find('.'), std::string::npos) << line;
    EXPECT_EQ(text.size() - text.find('.') - 1, 4u) << line;
  }
}

TEST(RenderJobProgress, ClassificationShowsAccuracy) {
  v1::JobProgress p = Sample();
  p.set_eval_accuracy(0.875);
  ProgressStyle cls;
  cls.classification = true;
  EXPECT_TRUE(absl::StrContains(RenderJobProgress(p, "", 200, cls), "acc 87.5%"));
  EXPECT_TRUE(absl::StrContains(SummarizeProgress(p, cls), "acc 87.5%"));
}

// A job that is not running (cancelled, queued for another attempt) has no rate and no ETA.
TEST(RenderJobProgress, NoRateOrEtaWhenNotRunning) {
  ProgressStyle ended;
  ended.live = false;
  const std::string line = RenderJobProgress(Sample(), "cancelled", 200, ended);
  EXPECT_FALSE(absl::StrContains(line, "tok/s")) << line;
  EXPECT_FALSE(absl::StrContains(line, "ETA")) << line;
  EXPECT_FALSE(absl::StrContains(SummarizeProgress(Sample(), ended), "ETA"));
}

TEST(SummarizeProgress, LogLineWithoutBar) {
  EXPECT_EQ(SummarizeProgress(Sample()),
            "step 40/100  loss 1.2345  eval 1.3010  1.20k tok/s  sparsity 35.0%  tau -  ETA 1m20s");
}

TEST(RenderTransfer, SizesRateAndEta) {
  const int64_t mib = 1 << 20;
  EXPECT_EQ(RenderTransfer("train.jsonl", 12 * mib, 30 * mib, 3, 100),
            "train.jsonl  [================>                       ]  12.0 MiB/30.0 MiB   40%  "
            "4.0 MiB/s  ETA 5s");  // 18 MiB left at 4 MiB/s: 4.5 s rounds to 5
  std::string narrow = RenderTransfer("train.jsonl", 12 * mib, 30 * mib, 3, 40);
  EXPECT_LE(narrow.size(), 40u);
  EXPECT_EQ(narrow, "[=====>       ]  12.0 MiB/30.0 MiB   40%");
}

}  // namespace
}  // namespace peftd::cli
