// Dataset records: JSONL, one JSON object a line, in one of five formats detected from the first
// valid record. LibTorch-, tokenizer- and gRPC-free: the server validates uploads with it line by
// line as bytes stream in, the worker reads a job's records with it.
//
//   text                 {"text": str}
//   prompt_completion    {"prompt": str, "completion": str}          loss on the completion only
//   messages             {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
//                        at least one assistant turn; "name", "tools" and other keys are ignored
//   classification       {"text": str, "label": int | str}
//   classification_pair  {"text": str, "text_pair": str, "label": int | str}
//   input_target         {"input": str, "target": str}                 sequence-to-sequence
//                        ("source" is read as "input" when "input" is absent)
//
// Rules: unknown keys are ignored; every string field must be non-empty; a string label is a
// label name (resolved against the caller's label_names when given). A line's format comes from
// its keys ("messages" > "prompt"/"completion" > "target", or "input" without "text" >
// "text_pair"/"label" > "text"); a line of another
// format than the file's (set by the first valid record) is an error. Line endings may be \n or
// \r\n; a UTF-8 byte-order mark at the start is skipped. Empty (or whitespace-only) lines at the
// end of the file are ignored, as Hugging Face `datasets` does; an empty line followed by a record
// is an error ("empty line"), since it usually means a broken export.
#ifndef PEFTD_COMMON_DATASET_RECORDS_H_
#define PEFTD_COMMON_DATASET_RECORDS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace peftd::data {

enum class Format {
  kUnknown,             // no valid record yet
  kText,                // {"text"}
  kPromptCompletion,    // {"prompt", "completion"}
  kMessages,            // {"messages": [...]}
  kClassification,      // {"text", "label"}
  kClassificationPair,  // {"text", "text_pair", "label"}
  kInputTarget,         // {"input", "target"} (SEQ_2_SEQ_LM)
};

// "text", "prompt_completion", "messages", "classification", "classification_pair",
// "input_target" ("" for kUnknown): the names of Dataset.format in the API.
const char* FormatName(Format format);
// True for the two classification formats (they need task SEQ_CLS; the others CAUSAL_LM).
bool IsClassification(Format format);
// True for input_target (it needs task SEQ_2_SEQ_LM, and that task needs it).
bool IsSeq2Seq(Format format);

struct Message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// One parsed, valid record. Only the fields of its format are set.
struct Record {
  Format format = Format::kUnknown;
  std::string text;        // text, classification, classification_pair
  std::string text_pair;   // classification_pair
  std::string prompt;      // prompt_completion
  std::string completion;  // prompt_completion
  std::string input;       // input_target
  std::string target;      // input_target
  std::vector<Message> messages;
  // Classification: the class id (from an integer label, or a name found in label_names), or -1
  // when the label is a name and the caller gave no label_names (then `label_name` is set).
  int64_t label = -1;
  std::string label_name;
};

// One bad line. `line` is 1-based; `field` is the offending field ("completion",
// "messages[2].role"), empty when the whole line is at fault (bad JSON, empty line, too long).
struct LineError {
  int64_t line = 0;
  std::string field;
  std::string reason;
};
bool operator==(const LineError& a, const LineError& b);
// "line 3: field \"completion\": missing" (or "line 3: empty line" without a field).
std::string FormatLineError(const LineError& error);

struct RecordOptions {
  // A longer line is an error; its bytes are not buffered. 0 = no limit.
  int64_t max_line_bytes = 8 << 20;
  // Feed() fails with RESOURCE_EXHAUSTED once the input grows past this. 0 = no limit.
  int64_t max_total_bytes = 0;
  // At most this many LineErrors are kept; every bad line is still counted.
  int64_t max_errors = 100;
  // > 0: integer labels must be in [0, num_labels). Defaults to label_names.size() when those
  // are given.
  int num_labels = 0;
  // Non-empty: string labels must be one of these (index = class id).
  std::vector<std::string> label_names;
  // A string label is an error when label_names is empty (the worker sets this: it must map every
  // label to an id; the server, which does not know the job yet, does not).
  bool require_label_ids = false;
};

struct ValidationResult {
  Format format = Format::kUnknown;  // of the first valid record
  int64_t lines = 0;                 // lines read, trailing empty lines included
  int64_t records = 0;               // valid records
  int64_t bad_lines = 0;             // lines with an error (may exceed errors.size())
  int64_t bytes = 0;                 // bytes read
  std::vector<LineError> errors;     // the first RecordOptions::max_errors, in line order
  bool ok() const { return bad_lines == 0 && records > 0; }
};

// "train.jsonl: 2 bad lines: line 3: field \"completion\": missing; line 7: ..." (at most
// `max_listed` errors, then "and N more"), or "train.jsonl: no records" for an empty file. ""
// when the result is ok().
std::string DescribeErrors(const std::string& name, const ValidationResult& result,
                           int max_listed = 10);

// Validates JSONL fed in chunks of any size (lines may span chunks); the result is the same for
// every way of splitting the input. Not thread-safe; one instance per input.
class RecordValidator {
 public:
  // Receives each valid record with its 1-based line number, in line order, as it is read.
  using RecordSink = std::function<void(int64_t line, Record record)>;

  explicit RecordValidator(RecordOptions options = {}, RecordSink sink = nullptr);

  // Consumes the next bytes. Line errors are collected, not returned; the only errors are
  // RESOURCE_EXHAUSTED past max_total_bytes (then every later call returns it too) and
  // FAILED_PRECONDITION after Finish().
  absl::Status Feed(std::string_view bytes);
  // Ends the input (a last line without a newline counts) and returns the result.
  ValidationResult Finish();

 private:
  void EndLine();
  void ProcessLine(std::string_view line);
  void AddError(int64_t line, std::string field, std::string reason);

  RecordOptions options_;
  RecordSink sink_;
  ValidationResult result_;
  std::string pending_;               // the current line's bytes so far
  bool pending_too_long_ = false;     // the current line passed max_line_bytes
  std::vector<int64_t> empty_lines_;  // empty lines not yet followed by a record
  int64_t format_line_ = 0;           // line of the record that set result_.format
  absl::Status stream_error_;
  bool finished_ = false;
};

// Parses one line (without its newline) as a record of `expected` (kUnknown: detect from the
// keys). On failure returns the error with line = 0 for the caller to fill in.
std::optional<LineError> ParseRecordLine(std::string_view line, Format expected,
                                         const RecordOptions& options, Record* record);

// Whole-input conveniences over RecordValidator.
ValidationResult ValidateRecords(std::string_view bytes, const RecordOptions& options = {},
                                 RecordValidator::RecordSink sink = nullptr);
// Reads `path` in blocks. NOT_FOUND / PERMISSION_DENIED naming the path when it cannot be read;
// line errors are in the result, not the status.
absl::StatusOr<ValidationResult> ValidateRecordFile(const std::string& path,
                                                    const RecordOptions& options = {},
                                                    RecordValidator::RecordSink sink = nullptr);

}  // namespace peftd::data

#endif  // PEFTD_COMMON_DATASET_RECORDS_H_
