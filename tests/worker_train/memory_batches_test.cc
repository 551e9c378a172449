// Batches from memory: length-grouped order (every record once per epoch, batches of close
// lengths, less padding, the same order after Restore), and the position and record numbers of
// a packed batch.
#include "worker/train/memory_batches.h"

#include <gtest/gtest.h>

#include <set>

namespace peftd::train {
namespace {

std::vector<Example> Mixed(int n) {
  std::vector<Example> out;
  for (int i = 0; i < n; ++i) {
    Example e;
    const int len = 2 + (i * 37) % 61;
    for (int j = 0; j < len; ++j) e.input_ids.push_back(i);  // the record's index, for tracing
    out.push_back(e);
  }
  return out;
}

int64_t PaddingOfAnEpoch(MemoryBatchSource& source) {
  int64_t padding = 0;
  for (int64_t k = 0; k < source.BatchesPerEpoch(); ++k) {
    const Batch b = source.Next();
    padding += b.input_ids.numel() - b.num_tokens;
  }
  return padding;
}

TEST(MemoryBatches, LengthGroupingKeepsEveryRecordAndCutsPadding) {
  const int n = 1000, batch = 4;
  MemoryBatchSource grouped(Mixed(n), batch, 0, 3, false, /*group_by_length=*/true);
  std::multiset<int64_t> seen;
  int64_t spread = 0;  // Σ over batches of (longest − shortest)
  for (int64_t k = 0; k < grouped.BatchesPerEpoch(); ++k) {
    const Batch b = grouped.Next();
    const torch::Tensor lengths = b.attention_mask.sum(1);
    spread += (lengths.max() - lengths.min()).item<int64_t>();
    for (int64_t i = 0; i < b.input_ids.size(0); ++i)
      seen.insert(b.input_ids[i][0].item<int64_t>());
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(n));
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), n - 1);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), static_cast<size_t>(n));
  // 200 records per mega-batch over lengths 2..62: neighbours differ by about a third of a token.
  EXPECT_LT(spread, 2 * grouped.BatchesPerEpoch());

  MemoryBatchSource plain(Mixed(n), batch, 0, 3);
  MemoryBatchSource grouped_again(Mixed(n), batch, 0, 3, false, true);
  EXPECT_LT(PaddingOfAnEpoch(grouped_again) * 10, PaddingOfAnEpoch(plain));
}

TEST(MemoryBatches, LengthGroupedOrderResumes) {
  MemoryBatchSource a(Mixed(300), 4, 0, 5, false, true);
  for (int i = 0; i < 100; ++i) a.Next();  // into the second epoch (75 batches each)
  MemoryBatchSource b(Mixed(300), 4, 0, 5, false, true);
  ASSERT_TRUE(b.Restore(a.Position()).ok());
  for (int i = 0; i < 80; ++i) {
    EXPECT_TRUE(torch::equal(a.Next().input_ids, b.Next().input_ids)) << "batch " << i;
  }
}

TEST(MemoryBatches, PackedRowsNumberTheirRecordsAndRestartPositions) {
  Example row, single;
  row.input_ids = {5, 6, 7, 8, 9, 10};
  row.labels = {-100, 6, 7, -100, 9, 10};
  row.record_starts = {0, 3};
  single.input_ids = {1, 2, 3, 4};
  const Batch b = Collate({&row, &single}, 0, false);
  ASSERT_TRUE(b.position_ids.defined());
  // The padding of the second row continues its record (positions 4, 5; record 2).
  EXPECT_TRUE(
      torch::equal(b.position_ids, torch::tensor({{0, 1, 2, 0, 1, 2}, {0, 1, 2, 3, 4, 5}})));
  EXPECT_TRUE(
      torch::equal(b.sequence_ids, torch::tensor({{0, 0, 0, 1, 1, 1}, {2, 2, 2, 2, 2, 2}})));
  EXPECT_EQ(b.num_targets, 4 + 3);
  EXPECT_EQ(b.num_tokens, 10);
  // Without a packed row the batch is as before: no positions, no record numbers.
  EXPECT_FALSE(Collate({&single}, 0, false).sequence_ids.defined());
}

}  // namespace
}  // namespace peftd::train
