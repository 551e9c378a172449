// Progress lines are pure functions of the numbers and the width: tested as exact strings.
#include "clients/cli/progress_bar.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(RenderJobProgress(Sample(), "running/training", 140),
            "running/training  [================>                       ]   40/100   40%  "
            "loss 1.234  eval 1.301  1.20k tok/s  sparsity 35.0%  ETA 1m20s");
}

TEST(RenderJobProgress, BarTakesTheRoomLeft) {
  // 92 columns: the text takes 80 with separators, the bar (10 cells + brackets) the rest.
  std::string line = RenderJobProgress(Sample(), "", 92);
  EXPECT_EQ(line,
            "[====>      ]   40/100   40%  loss 1.234  eval 1.301  1.20k tok/s  "
            "sparsity 35.0%  ETA 1m20s");
  EXPECT_EQ(line.size(), 92u);
}

TEST(RenderJobProgress, NarrowTerminalDropsLeastUsefulFirst) {
  std::string line = RenderJobProgress(Sample(), "running/training", 60);
  EXPECT_LE(line.size(), 60u);
  // tok/s, sparsity, eval and the label went; the bar grows back into the room they leave.
  EXPECT_EQ(line, "[========>           ]   40/100   40%  loss 1.234  ETA 1m20s");
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
  EXPECT_EQ(RenderJobProgress(p, "", 60),
            "[                                        ]  step 7  loss 2.5");
  v1::JobProgress before_first_step;
  before_first_step.set_total_steps(10);
  EXPECT_EQ(RenderJobProgress(before_first_step, "loading_model", 50),
            "loading_model  [            ]   0/10    0%  loss -");
}

TEST(SummarizeProgress, LogLineWithoutBar) {
  EXPECT_EQ(SummarizeProgress(Sample()),
            "step 40/100  loss 1.234  eval 1.301  1.20k tok/s  sparsity 35.0%  ETA 1m20s");
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
