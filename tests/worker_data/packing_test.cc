// Packing records into rows: every record lands once, whole and in one row; rows never exceed
// max_seq_len; record starts and the −100 at each start; best fit decreasing fills rows; the
// result depends on the seed only through ties; the efficiency figure.
#include "worker/data/packing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace peftd::data {
namespace {

constexpr int64_t kNo = -100;

// Record k has `len` tokens, all equal to 1000·k + position, so rows can be traced back.
Example Record(int k, int len, int prompt = 0) {
  Example e;
  for (int j = 0; j < len; ++j) e.input_ids.push_back(1000 * k + j);
  if (prompt > 0) {
    e.labels = e.input_ids;
    for (int j = 0; j < prompt; ++j) e.labels[j] = kNo;
  }
  return e;
}

TEST(Packing, EveryRecordLandsOnceWholeInOneRow) {
  std::vector<Example> records;
  const std::vector<int> lengths = {11, 9, 6, 4, 3, 16, 1, 8, 8, 2};
  for (size_t k = 0; k < lengths.size(); ++k)
    records.push_back(Record(k, lengths[k], k == 1 ? 5 : 0));
  PackingStats stats;
  const std::vector<Example> rows = PackExamples(records, 16, 3, &stats);
  std::map<int64_t, int> seen;
  int64_t tokens = 0;
  for (const Example& row : rows) {
    ASSERT_LE(row.input_ids.size(), 16u);
    ASSERT_EQ(row.labels.size(), row.input_ids.size());
    ASSERT_FALSE(row.record_starts.empty());
    EXPECT_EQ(row.record_starts[0], 0);
    for (size_t r = 0; r < row.record_starts.size(); ++r) {
      const size_t begin = row.record_starts[r];
      const size_t end =
          r + 1 < row.record_starts.size() ? row.record_starts[r + 1] : row.input_ids.size();
      const int64_t k = row.input_ids[begin] / 1000;
      ++seen[k];
      const Example& want = records[k];
      ASSERT_EQ(end - begin, want.input_ids.size()) << "record " << k;
      EXPECT_EQ(row.labels[begin], kNo) << "record " << k << ": nothing predicts its first token";
      for (size_t j = 0; j < end - begin; ++j) {
        EXPECT_EQ(row.input_ids[begin + j], want.input_ids[j]);
        if (j > 0) {
          EXPECT_EQ(row.labels[begin + j],
                    want.labels.empty() ? want.input_ids[j] : want.labels[j]);
        }
      }
    }
    tokens += static_cast<int64_t>(row.input_ids.size());
  }
  EXPECT_EQ(seen.size(), lengths.size());
  for (const auto& [k, n] : seen) EXPECT_EQ(n, 1) << "record " << k;
  // 68 tokens fit in 5 rows of 16 (best fit decreasing: 16 | 11+4 | 9+6+1 | 8+8 | 3+2).
  EXPECT_EQ(rows.size(), 5u);
  EXPECT_EQ(stats.records, 10);
  EXPECT_EQ(stats.rows, 5);
  EXPECT_EQ(stats.tokens, tokens);
  EXPECT_EQ(tokens, 68);
  EXPECT_DOUBLE_EQ(stats.Efficiency(), 68.0 / 80.0);
}

TEST(Packing, SameSeedSameRows) {
  std::vector<Example> records;
  for (int k = 0; k < 40; ++k) records.push_back(Record(k, 1 + (k * 7) % 13));
  const auto a = PackExamples(records, 32, 5);
  const auto b = PackExamples(records, 32, 5);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].input_ids, b[i].input_ids);
    EXPECT_EQ(a[i].record_starts, b[i].record_starts);
  }
}

}  // namespace
}  // namespace peftd::data
