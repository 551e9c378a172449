// Dataset records: every error kind with its line and field (a table of bad lines), format
// detection and mixing, empty lines, limits, label checks, chunk-split invariance of the
// incremental validator, and a 100k-line file.
#include "common/dataset_records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace peftd::data {
namespace {

using ::testing::HasSubstr;

std::ostream& operator<<(std::ostream& os, const LineError& e) { return os << FormatLineError(e); }

// Records delivered to the sink, as (line, format, a digest of the fields).
struct Seen {
  int64_t line;
  std::string digest;
  bool operator==(const Seen& o) const { return line == o.line && digest == o.digest; }
};

std::string Digest(const Record& r) {
  std::string d = FormatName(r.format);
  for (const auto* s : {&r.text, &r.text_pair, &r.prompt, &r.completion, &r.label_name}) {
    d += "|" + *s;
  }
  for (const auto& m : r.messages) d += "|" + m.role + ":" + m.content;
  return d + "|" + std::to_string(r.label);
}

ValidationResult Validate(const std::string& bytes, const RecordOptions& options = {},
                          std::vector<Seen>* seen = nullptr) {
  return ValidateRecords(bytes, options, [seen](int64_t line, Record r) {
    if (seen) seen->push_back({line, Digest(r)});
  });
}

// One record line that must fail, alone or after a valid first line that sets the format.
struct BadLine {
  const char* first;  // a valid line before it ("" = none)
  const char* line;
  const char* field;
  const char* reason;  // substring of the reason
};

const BadLine kBadLines[] = {
    // JSON itself
    {"", R"({"text": "a")", "",
     "invalid JSON at column 13: syntax error while parsing object - unexpected end of input"},
    {"", R"({"text": tru})", "", "invalid JSON at column 13: syntax error"},
    {"", R"({"text": "a"} {"text": "b"})", "", "invalid JSON at column 15"},
    {"", "{\"text\": \"a\xff\"}", "", "ill-formed UTF-8"},
    {"", R"({"text": "a", "n": 1e999})", "", "invalid JSON: number overflow parsing '1e999'"},
    {"", R"(["text"])", "", "expected a JSON object, got an array"},
    {"", R"("text")", "", "expected a JSON object, got a string"},
    {"", R"({})", "", "no record field: expected \"text\""},
    {"", R"({"txt": "a"})", "", "(found \"txt\")"},
    // text
    {"", R"({"text": ""})", "text", "empty string"},
    {"", R"({"text": 3})", "text", "expected a string, got a number"},
    {"", R"({"text": null})", "text", "expected a string, got null"},
    {"", R"({"text": ["a"]})", "text", "expected a string, got an array"},
    // prompt_completion
    {"", R"({"prompt": "a"})", "completion", "missing"},
    {"", R"({"completion": "a"})", "prompt", "missing"},
    {"", R"({"prompt": "a", "completion": {"x": 1}})", "completion",
     "expected a string, got an object"},
    {"", R"({"prompt": "", "completion": "b"})", "prompt", "empty string"},
    {R"({"prompt": "a", "completion": "b"})", R"({"prompt": "a", "answer": "b"})", "completion",
     "missing"},
    // messages
    {"", R"({"messages": []})", "messages", "empty list"},
    {"", R"({"messages": "hi"})", "messages", "expected an array, got a string"},
    {"", R"({"messages": [{"role": "user", "content": "hi"}]})", "messages",
     "no assistant message"},
    {"", R"({"messages": [{"role": "bot", "content": "hi"}]})", "messages[0].role",
     "invalid role \"bot\" (expected system, user or assistant)"},
    {"", R"({"messages": [{"role": "user", "content": "q"}, {"content": "a"}]})",
     "messages[1].role", "missing"},
    {"", R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]})",
     "messages[1].content", "missing"},
    {"",
     R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]})",
     "messages[1].content", "empty string"},
    {"", R"({"messages": [{"role": "assistant", "content": null, "tool_calls": []}]})",
     "messages[0].content", "expected a string, got null"},
    {"", R"({"messages": [{"role": "assistant", "content": [{"type": "text"}]}]})",
     "messages[0].content", "expected a string, got an array"},
    {"", R"({"messages": [["user", "hi"]]})", "messages[0]", "expected an object, got an array"},
    {"", R"({"messages": [{"role": 1, "content": "hi"}]})", "messages[0].role",
     "expected a string, got a number"},
    // classification
    {"", R"({"text": "a", "label": 1.5})", "label",
     "expected an integer or a label name, got the number 1.5 (not an integer)"},
    {"", R"({"text": "a", "label": true})", "label", "got a boolean"},
    {"", R"({"text": "a", "label": -1})", "label", "label -1 is negative"},
    {"", R"({"text": "a", "label": ""})", "label", "empty string"},
    {"", R"({"label": 1})", "text", "missing"},
    {"", R"({"text": "a", "text_pair": "b"})", "label", "missing"},
    {"", R"({"text": "a", "text_pair": 2, "label": 0})", "text_pair",
     "expected a string, got a number"},
    {R"({"text": "a", "label": 0})", R"({"text": "a"})", "label", "missing"},
    {R"({"text": "a", "text_pair": "b", "label": 0})", R"({"text": "a", "label": 1})", "text_pair",
     "missing"},
    // formats mixed in one file
    {R"({"text": "a"})", R"({"prompt": "p", "completion": "c"})", "",
     "a prompt_completion record in a text file (line 1 set the format); use one format per file"},
    {R"({"prompt": "p", "completion": "c"})",
     R"({"messages": [{"role": "assistant", "content": "x"}]})", "",
     "a messages record in a prompt_completion file"},
    {R"({"text": "a", "label": 0})", R"({"text": "a", "text_pair": "b", "label": 1})", "",
     "a classification_pair record in a classification file"},
};

TEST(DatasetRecords, EveryBadLineNamesItsLineAndField) {
  for (const BadLine& bad : kBadLines) {
    SCOPED_TRACE(bad.line);
    std::string file;
    int64_t line = 1;
    if (*bad.first) {
      file = std::string(bad.first) + "\n";
      line = 2;
    }
    file += std::string(bad.line) + "\n";
    ValidationResult r = Validate(file);
    ASSERT_EQ(r.bad_lines, 1);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].line, line);
    EXPECT_EQ(r.errors[0].field, bad.field);
    EXPECT_THAT(r.errors[0].reason, HasSubstr(bad.reason));
    EXPECT_EQ(r.records, line - 1);
    EXPECT_FALSE(r.ok());
  }
}

TEST(DatasetRecords, EveryBadLineOfAFileIsReportedInOrder) {
  std::string file;
  for (const BadLine& bad : kBadLines) {
    if (!*bad.first) file += std::string(bad.line) + "\n";
  }
  ValidationResult r = Validate(file);
  EXPECT_EQ(r.records, 0);
  EXPECT_EQ(r.bad_lines, r.lines);
  ASSERT_EQ(r.errors.size(), static_cast<size_t>(r.lines));
  for (size_t i = 0; i < r.errors.size(); ++i) EXPECT_EQ(r.errors[i].line, int64_t(i) + 1);
}

TEST(DatasetRecords, DetectsEachFormatAndParsesItsFields) {
  struct Case {
    const char* line;
    Format format;
    const char* digest;
  } cases[] = {
      {R"({"text": "hello", "id": 7})", Format::kText, "text|hello|||||-1"},
      {R"({"prompt": "2+2=", "completion": "4"})", Format::kPromptCompletion,
       "prompt_completion|||2+2=|4||-1"},
      {R"({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u",
       "name": "bob"}, {"role": "assistant", "content": "a"}], "tools": []})",
       Format::kMessages, "messages||||||system:s|user:u|assistant:a|-1"},
      {R"({"text": "good", "label": 1})", Format::kClassification, "classification|good|||||1"},
      {R"({"text": "good", "label": "pos"})", Format::kClassification,
       "classification|good||||pos|-1"},
      {R"({"text": "a", "text_pair": "b", "label": 0})", Format::kClassificationPair,
       "classification_pair|a|b||||0"},
  };
  for (const Case& c : cases) {
    std::string line = c.line;
    line.erase(std::remove(line.begin(), line.end(), '\n'), line.end());
    std::vector<Seen> seen;
    ValidationResult r = Validate(line, {}, &seen);
    EXPECT_TRUE(r.ok()) << line;
    EXPECT_EQ(r.format, c.format);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].line, 1);
    EXPECT_EQ(seen[0].digest, c.digest);
  }
}

TEST(DatasetRecords, TrailingEmptyLinesAreIgnoredEmptyLinesInsideAreErrors) {
  ValidationResult r = Validate("{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n \n\t\r\n\n");
  EXPECT_EQ(r.lines, 6);
  EXPECT_EQ(r.records, 2);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], (LineError{2, "", "empty line"}));

  r = Validate("\n\n{\"text\": \"a\"}");
  EXPECT_EQ(r.bad_lines, 2);
  EXPECT_EQ(r.errors[0], (LineError{1, "", "empty line"}));
  EXPECT_EQ(r.errors[1], (LineError{2, "", "empty line"}));

  r = Validate("{\"text\": \"a\"}\n\n\n");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.lines, 3);
}

TEST(DatasetRecords, CrLfLinesAByteOrderMarkAndNoFinalNewlineAreAccepted) {
  std::vector<Seen> seen;
  ValidationResult r = Validate(
      "\xEF\xBB\xBF{\"text\": \"a\"}\r\n{\"text\": \"b\"}\r\n{\"text\": \"c\"}", {}, &seen);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.lines, 3);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2], (Seen{3, "text|c|||||-1"}));
  // The JSON parser skips a BOM at the start of any line too (concatenated exports).
  r = Validate("{\"text\": \"a\"}\n\xEF\xBB\xBF{\"text\": \"b\"}\n");
  EXPECT_TRUE(r.ok());
}

TEST(DatasetRecords, EmptyInputHasNoRecordsAndSaysSo) {
  ValidationResult r = Validate("");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.lines, 0);
  EXPECT_THAT(DescribeErrors("train.jsonl", r), HasSubstr("train.jsonl: no records"));
  r = Validate("\n\n");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.bad_lines, 0);
}

TEST(DatasetRecords, LabelsAreCheckedAgainstNumLabelsAndNames) {
  RecordOptions options;
  options.num_labels = 3;
  ValidationResult r =
      Validate("{\"text\": \"a\", \"label\": 2}\n{\"text\": \"a\", \"label\": 3}\n", options);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0],
            (LineError{2, "label", "label 3 is out of range: num_labels is 3 (labels are 0..2)"}));

  options = {};
  options.label_names = {"negative", "positive"};
  std::vector<Seen> seen;
  r = Validate(
      "{\"text\": \"a\", \"label\": \"positive\"}\n"
      "{\"text\": \"b\", \"label\": \"neutral\"}\n"
      "{\"text\": \"c\", \"label\": 2}\n"
      "{\"text\": \"d\", \"label\": 0}\n",
      options, &seen);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0],
            (LineError{2, "label", "unknown label name \"neutral\" (known: negative, positive)"}));
  EXPECT_EQ(r.errors[1].line, 3);
  EXPECT_THAT(r.errors[1].reason, HasSubstr("num_labels is 2"));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].digest, "classification|a||||positive|1");
  EXPECT_EQ(seen[1].digest, "classification|d|||||0");

  options = {};
  options.require_label_ids = true;
  r = Validate("{\"text\": \"a\", \"label\": \"pos\"}\n", options);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "label");
  EXPECT_THAT(r.errors[0].reason, HasSubstr("needs label_names"));
}

TEST(DatasetRecords, ALineOverTheLimitIsAnErrorAndIsNotBuffered) {
  RecordOptions options;
  options.max_line_bytes = 20;
  const std::string longline = "{\"text\": \"" + std::string(100, 'x') + "\"}";
  const std::string file = "{\"text\": \"ok\"}\n" + longline + "\n{\"text\": \"ok2\"}\n";
  for (size_t chunk : {size_t{1}, size_t{7}, file.size()}) {
    RecordValidator v(options);
    for (size_t i = 0; i < file.size(); i += chunk) {
      ASSERT_TRUE(v.Feed(std::string_view(file).substr(i, chunk)).ok());
    }
    ValidationResult r = v.Finish();
    EXPECT_EQ(r.records, 2);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0], (LineError{2, "", "line is longer than the limit of 20 bytes"}));
  }
  // Exactly at the limit is fine.
  options.max_line_bytes = 14;
  EXPECT_TRUE(Validate("{\"text\": \"ok\"}", options).ok());
  options.max_line_bytes = 13;
  EXPECT_EQ(Validate("{\"text\": \"ok\"}", options).bad_lines, 1);
}

TEST(DatasetRecords, InputOverTheTotalLimitFailsTheStream) {
  RecordOptions options;
  options.max_total_bytes = 30;
  RecordValidator v(options);
  EXPECT_TRUE(v.Feed("{\"text\": \"a\"}\n").ok());
  absl::Status s = v.Feed("{\"text\": \"bbbbbbbbbbbbbbbbbbbb\"}\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("larger than the limit of 30 bytes"));
  EXPECT_EQ(v.Feed("x").code(), absl::StatusCode::kResourceExhausted);
  ValidationResult r = v.Finish();
  EXPECT_EQ(r.bytes, 14);
  EXPECT_EQ(r.records, 1);
  EXPECT_EQ(v.Feed("x").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DatasetRecords, ErrorsAreCappedButEveryBadLineIsCounted) {
  std::string file;
  for (int i = 0; i < 250; ++i) file += "{\"text\": 1}\n";
  RecordOptions options;
  options.max_errors = 100;
  ValidationResult r = Validate(file, options);
  EXPECT_EQ(r.bad_lines, 250);
  ASSERT_EQ(r.errors.size(), 100u);
  EXPECT_EQ(r.errors.back().line, 100);
  const std::string d = DescribeErrors("train.jsonl", r, 2);
  EXPECT_EQ(d,
            "train.jsonl: 250 bad lines: line 1: field \"text\": expected a string, got a number; "
            "line 2: field \"text\": expected a string, got a number; and 248 more");
  options.max_errors = 0;  // no cap
  EXPECT_EQ(Validate(file, options).errors.size(), 250u);
}

TEST(DatasetRecords, ReasonsAreValidUtf8EvenForBrokenInput) {
  ValidationResult r = Validate("{\"text\": \xff\xfe}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].reason, HasSubstr("\\xff"));
  for (unsigned char c : r.errors[0].reason) EXPECT_LT(c, 0x80);
  // A long label name is cut on a character boundary.
  RecordOptions options;
  options.label_names = {"a"};
  std::string name;
  for (int i = 0; i < 40; ++i) name += "\xC3\xA9";  // é
  r = Validate("{\"text\": \"a\", \"label\": \"" + name + "\"}", options);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].reason, HasSubstr(name.substr(0, 60) + "...\""));
}

// A file with every kind of line, good and bad, spanning chunk boundaries in every way.
std::string MixedFile() {
  std::string file = "\xEF\xBB\xBF{\"prompt\": \"p\\u00e9\", \"completion\": \"c\\n\"}\r\n";
  for (const BadLine& bad : kBadLines) file += std::string(bad.line) + "\n";
  file += "\n\n{\"prompt\": \"" + std::string(300, 'q') + "\", \"completion\": \"x\"}\n";
  file += "{\"prompt\": \"caf\xC3\xA9\", \"completion\": \"ok\", \"extra\": [1, 2]}\n\n \n";
  file += "{\"prompt\": \"last\", \"completion\": \"no newline\"}";
  return file;
}

TEST(DatasetRecords, ChunkSplitsGiveTheSameResultAsTheWholeInput) {
  const std::string file = MixedFile();
  RecordOptions options;
  options.max_line_bytes = 200;
  std::vector<Seen> whole_seen;
  const ValidationResult whole = Validate(file, options, &whole_seen);
  EXPECT_EQ(whole.records, 4);  // the first, a prompt_completion line of the table, the last two
  EXPECT_GT(whole.bad_lines, 30);
  const auto check = [&](const std::vector<size_t>& sizes) {
    std::vector<Seen> seen;
    RecordValidator v(options, [&](int64_t line, Record r) { seen.push_back({line, Digest(r)}); });
    size_t at = 0;
    for (size_t i = 0; at < file.size(); ++i) {
      const size_t n = std::min(sizes[i % sizes.size()], file.size() - at);
      ASSERT_TRUE(v.Feed(std::string_view(file).substr(at, n)).ok());
      at += n;
    }
    ValidationResult r = v.Finish();
    EXPECT_EQ(r.format, whole.format);
    EXPECT_EQ(r.lines, whole.lines);
    EXPECT_EQ(r.records, whole.records);
    EXPECT_EQ(r.bad_lines, whole.bad_lines);
    EXPECT_EQ(r.bytes, static_cast<int64_t>(file.size()));
    EXPECT_EQ(r.errors, whole.errors);
    EXPECT_EQ(seen, whole_seen);
  };
  for (size_t n = 1; n <= 64; ++n) check({n});
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<size_t> sizes;
    for (int i = 0; i < 30; ++i) sizes.push_back(std::uniform_int_distribution<size_t>(0, 40)(rng));
    sizes.push_back(1);  // never all zero
    check(sizes);
  }
}

TEST(DatasetRecords, AHundredThousandLinesValidate) {
  std::string file;
  for (int i = 0; i < 100000; ++i) {
    file += "{\"prompt\": \"What is " + std::to_string(i) + " plus 1?\", \"completion\": \"" +
            std::to_string(i + 1) + "\"}\n";
  }
  file += "{\"prompt\": \"x\"}\n";
  int64_t sinked = 0;
  ValidationResult r = ValidateRecords(file, {}, [&](int64_t, Record) { ++sinked; });
  EXPECT_EQ(r.records, 100000);
  EXPECT_EQ(sinked, 100000);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], (LineError{100001, "completion", "missing"}));
}

TEST(DatasetRecords, FilesAreReadAndMissingOnesNamed) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("peftd_records_" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream out(path, std::ios::binary);
    out << MixedFile();
  }
  auto r = ValidateRecordFile(path.string());
  ASSERT_TRUE(r.ok()) << r.status();
  const ValidationResult whole = Validate(MixedFile());
  EXPECT_EQ(r->errors, whole.errors);
  EXPECT_EQ(r->records, whole.records);
  std::filesystem::remove(path);
  auto missing = ValidateRecordFile(path.string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(path.string()));
}

}  // namespace
}  // namespace peftd::data
