// input_target records (SEQ_2_SEQ_LM, issue 14): exact encoder and target ids (EOS appended to
// both, no BOS), "source" read as "input", truncation that keeps the EOS and is counted, refusal
// without truncate naming the field and its limit, bad lines named by line and field, the task and
// format checks both ways, and T5's real SentencePiece tokenizer (../shared/fixtures/tok-t5).
#include "worker/data/seq2seq_records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/dataset_records.h"
#include "tests/worker_data/fake_tokenizer.h"
#include "tests/worker_data/tokenizer_fixtures.h"
#include "worker/data/dataset.h"
#include "worker/data/dataset_report.h"
#include "worker/data/sentencepiece_tokenizer.h"

namespace peftd::data {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr int64_t kEos = FakeTokenizer::kEos;

DatasetOptions Seq2Seq() {
  DatasetOptions o;
  o.task = Task::kSeq2SeqLm;
  return o;
}

absl::StatusOr<LoadedDataset> Load(const std::string& jsonl, const DatasetOptions& options,
                                   std::vector<LineError>* errors = nullptr,
                                   const Tokenizer& tokenizer = FakeTokenizer()) {
  return LoadDatasetFromBytes(jsonl, "train.jsonl", tokenizer, options, errors);
}

TEST(Seq2SeqRecords, InputAndTargetEachGetEosAndNoBos) {
  auto d = Load(R"({"input": "ab", "target": "xyz"})"
                "\n"
                R"({"source": "c", "target": "d", "id": 7})"
                "\n",
                Seq2Seq());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->format, "input_target");
  ASSERT_EQ(d->examples.size(), 2u);
  // FakeTokenizer adds BOS for causal LM (add_bos); T5-style records never do.
  EXPECT_THAT(d->examples[0].input_ids, ElementsAre('a', 'b', kEos));
  EXPECT_THAT(d->examples[0].target_ids, ElementsAre('x', 'y', 'z', kEos));
  EXPECT_TRUE(d->examples[0].labels.empty());
  EXPECT_THAT(d->examples[1].input_ids, ElementsAre('c', kEos));  // "source" is the input
  EXPECT_THAT(d->examples[1].target_ids, ElementsAre('d', kEos));
  EXPECT_EQ(d->stats.tokens, 3 + 4 + 2 + 2);
  // The report counts every target token as trained, and shows the target after the input.
  DatasetReport report = InspectDataset(*d, FakeTokenizer(), Seq2Seq(), 0, 1);
  EXPECT_EQ(report.loss_tokens, 4 + 2);
  ASSERT_EQ(report.sample.size(), 7u);
  EXPECT_FALSE(report.sample[2].loss);
  EXPECT_TRUE(report.sample[3].loss);
}

TEST(Seq2SeqRecords, TruncationKeepsTheEosAndIsCounted) {
  DatasetOptions o = Seq2Seq();
  o.max_seq_len = 4;
  o.max_target_len = 3;
  auto d = Load(R"({"input": "abcdefgh", "target": "uvwxyz"})"
                "\n"
                R"({"input": "ab", "target": "uv"})"
                "\n",
                o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->examples[0].input_ids, ElementsAre('a', 'b', 'c', kEos));
  EXPECT_THAT(d->examples[0].target_ids, ElementsAre('u', 'v', kEos));
  EXPECT_EQ(d->stats.truncated_records, 1);
  // A target alone over its limit is truncated too.
  o.max_seq_len = 100;
  d = Load(R"({"input": "ab", "target": "uvwxyz"})", o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->stats.truncated_records, 1);
}

TEST(Seq2SeqRecords, WithoutTruncateALongInputOrTargetIsABadLineNamingItsLimit) {
  DatasetOptions o = Seq2Seq();
  o.truncate = false;
  o.max_seq_len = 4;
  o.max_target_len = 3;
  std::vector<LineError> errors;
  auto d = Load(R"({"input": "ab", "target": "uv"})"
                "\n"
                R"({"input": "abcdefgh", "target": "uv"})"
                "\n"
                R"({"input": "ab", "target": "uvwxyz"})"
                "\n",
                o, &errors);
  ASSERT_FALSE(d.ok());
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].line, 2);
  EXPECT_THAT(errors[0].reason, HasSubstr("input is 9 tokens, longer than max_seq_len 4"));
  EXPECT_EQ(errors[1].line, 3);
  EXPECT_THAT(errors[1].reason, HasSubstr("target is 7 tokens, longer than max_target_len 3"));
}

TEST(Seq2SeqRecords, BadLinesNameTheLineAndTheField) {
  std::vector<LineError> errors;
  DatasetOptions o = Seq2Seq();
  o.skip_bad_lines = true;
  auto d = Load(R"({"input": "ab", "target": "uv"})"
                "\n"
                R"({"input": "ab"})"
                "\n"
                R"({"target": "uv"})"
                "\n"
                R"({"input": "", "target": "uv"})"
                "\n"
                R"({"input": "ab", "target": 3})"
                "\n",
                o, &errors);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->examples.size(), 1u);
  EXPECT_EQ(d->stats.skipped_lines, 4);
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].line, 2);
  EXPECT_EQ(errors[0].field, "target");
  EXPECT_EQ(errors[1].line, 3);
  EXPECT_EQ(errors[1].field, "input");
  EXPECT_EQ(errors[2].line, 4);
  EXPECT_EQ(errors[2].field, "input");
  EXPECT_EQ(errors[3].line, 5);
  EXPECT_EQ(errors[3].field, "target");
}

TEST(Seq2SeqRecords, FormatsMustFitTheTaskBothWays) {
  // input_target records on a causal LM job.
  auto d = Load(R"({"input": "ab", "target": "uv"})", DatasetOptions());
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("need task SEQ_2_SEQ_LM"));
  // text records on a seq2seq job.
  d = Load(R"({"text": "ab"})", Seq2Seq());
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("input_target records"));
  // "source" beside "text" is metadata, not an input: such a file stays text.
  auto text = Load(R"({"text": "ab", "source": "wiki"})", DatasetOptions());
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->format, "text");
  EXPECT_TRUE(IsSeq2Seq(Format::kInputTarget));
  EXPECT_FALSE(IsClassification(Format::kInputTarget));
  EXPECT_STREQ(FormatName(Format::kInputTarget), "input_target");
}

TEST(Seq2SeqRecords, T5SentencePieceAppendsItsEos) {
  auto tok = LoadSentencePieceTokenizer((testing::Fixtures() / "tok-t5" / "spiece.model").string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  auto d =
      Load(R"({"input": "translate English to German: That is good.", "target": "Das ist gut."})",
           Seq2Seq(), nullptr, t);
  ASSERT_TRUE(d.ok()) << d.status();
  const Example& e = d->examples[0];
  std::vector<int64_t> input = t.Encode("translate English to German: That is good.");
  input.push_back(1);  // </s>
  std::vector<int64_t> target = t.Encode("Das ist gut.");
  target.push_back(1);
  EXPECT_THAT(e.input_ids, ElementsAreArray(input));
  EXPECT_THAT(e.target_ids, ElementsAreArray(target));
  EXPECT_EQ(t.Decode(e.target_ids, /*skip_special=*/true), "Das ist gut.");
}

// A T5 folder as the hub has it: spiece.model beside a tokenizer.json of the Unigram model type
// (not read here): the SentencePiece model is loaded, with T5's EOS and pad.
TEST(Seq2SeqRecords, AT5FolderLoadsItsSpieceModel) {
  const auto dir = testing::TempDir("t5folder");
  std::filesystem::copy_file(testing::Fixtures() / "tok-t5" / "spiece.model", dir / "spiece.model");
  auto tok = LoadTokenizer(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->special().eos_id, 1);
  testing::WriteAll(
      dir / "tokenizer.json",
      R"({"version": "1.0", "model": {"type": "Unigram", "vocab": [["<pad>", 0.0]]}})");
  tok = LoadTokenizer(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->VocabSize(), 32000);
  EXPECT_EQ((*tok)->special().eos_id, 1);
  std::filesystem::remove(dir / "spiece.model");
  EXPECT_FALSE(LoadTokenizer(dir.string()).ok());  // the tokenizer.json alone is not read
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace peftd::data
