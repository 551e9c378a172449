// The dataset report of `peftd-worker tokenize`: exact counts under the byte tokenizer
// (tokens, tokens with loss, truncation, packing rows and efficiency), the rendered record's
// loss mask, and its JSON.
#include "worker/data/dataset_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/worker_data/fake_tokenizer.h"

namespace peftd::data {
namespace {

using ::testing::HasSubstr;

TEST(DatasetReport, CountsTokensLossTruncationAndPacking) {
  FakeTokenizer tokenizer;
  DatasetOptions options;
  options.max_seq_len = 12;
  options.num_threads = 1;
  // [BOS] "Q:" "ab" EOS = 6 tokens, loss on "ab" and EOS (3); [BOS] "A" "hello" EOS = 8 tokens,
  // loss on 6; a text record of 20 bytes cut to 12 (loss on 11).
  const std::string jsonl =
      "{\"prompt\": \"Q:\", \"completion\": \"ab\"}\n"
      "{\"prompt\": \"A\", \"completion\": \"hello\"}\n"
      "{\"prompt\": \"0123456789\", \"completion\": \"0123456789\"}\n";
  absl::StatusOr<LoadedDataset> dataset =
      LoadDatasetFromBytes(jsonl, "train.jsonl", tokenizer, options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const DatasetReport r = InspectDataset(*dataset, tokenizer, options, 0, 42);
  EXPECT_EQ(r.format, "prompt_completion");
  EXPECT_EQ(r.records, 3);
  EXPECT_EQ(r.tokens, 6 + 8 + 12);
  EXPECT_EQ(r.loss_tokens, 3 + 6 + 1);  // the cut record keeps "0" of its completion
  EXPECT_EQ(r.truncated_records, 1);
  EXPECT_EQ(r.longest_record, 12);
  // Rows of 12: {12}, {8}, {6}: 8 + 6 = 14 do not share a row.
  EXPECT_EQ(r.packed_rows, 3);
  EXPECT_DOUBLE_EQ(r.packing_efficiency, 26.0 / 36.0);
  ASSERT_EQ(r.sample.size(), 6u);
  std::string mask;
  for (const auto& t : r.sample) mask += t.loss ? '1' : '0';
  EXPECT_EQ(mask, "000111");
  EXPECT_EQ(r.sample[0].text, "<s>");
  EXPECT_THAT(ReportText(r), HasSubstr("<s>Q:⟦ab</s>⟧"));
  const nlohmann::json j = ReportJson(r);
  EXPECT_EQ(j["loss_tokens"], 10);
  EXPECT_EQ(j["sample"]["tokens"][3]["text"], "a");
  EXPECT_EQ(j["sample"]["tokens"][3]["loss"], true);
}

TEST(DatasetReport, TheRenderedRecordIsChosenAndClamped) {
  FakeTokenizer tokenizer;
  DatasetOptions options;
  options.num_threads = 1;
  absl::StatusOr<LoadedDataset> dataset = LoadDatasetFromBytes(
      "{\"text\": \"xy\"}\n{\"text\": \"zzz\"}\n", "train.jsonl", tokenizer, options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(InspectDataset(*dataset, tokenizer, options, 1, 42).sample.size(), 5u);
  const DatasetReport last = InspectDataset(*dataset, tokenizer, options, 99, 42);
  EXPECT_EQ(last.sample_index, 1);
  EXPECT_EQ(last.loss_tokens, 3 + 4);  // a text record trains on every token but the first
}

}  // namespace
}  // namespace peftd::data
