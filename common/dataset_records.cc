#include "common/dataset_records.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace peftd::data {
namespace {

using nlohmann::json;

constexpr char kBom[] = "\xEF\xBB\xBF";
constexpr int kMaxNamesListed = 10;

LineError Error(std::string field, std::string reason) {
  return LineError{0, std::move(field), std::move(reason)};
}

// "a string", "an array", "null": the JSON type of `v` as a reason names it.
std::string TypeOf(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_float:
      return absl::StrCat("the number ", v.dump(), " (not an integer)");
    default:
      return "a number";
  }
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the byte there starts none.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

// Error texts go into protobuf strings, which must be valid UTF-8: invalid bytes (from the input,
// quoted by the JSON parser) become "\xNN".
std::string ValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      static const char kHex[] = "0123456789abcdef";
      const unsigned char c = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// `s` in quotes, cut (on a character boundary) when long.
std::string Quoted(std::string_view s) {
  constexpr size_t kMaxShown = 60;
  if (s.size() <= kMaxShown) return "\"" + std::string(s) + "\"";
  size_t cut = kMaxShown;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return "\"" + std::string(s.substr(0, cut)) + "...\"";
}

std::string ListNames(const std::vector<std::string>& names) {
  if (names.size() <= kMaxNamesListed) return absl::StrJoin(names, ", ");
  std::vector<std::string> head(names.begin(), names.begin() + kMaxNamesListed);
  return absl::StrCat(absl::StrJoin(head, ", "), ", ... (", names.size(), " in all)");
}

// Moves the non-empty string `obj[key]` into `out`; `path` names the field in errors.
std::optional<LineError> TakeString(json& obj, const char* key, const std::string& path,
                                    std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return Error(path, "missing");
  if (!it->is_string()) return Error(path, absl::StrCat("expected a string, got ", TypeOf(*it)));
  std::string& s = it->get_ref<std::string&>();
  if (s.empty()) return Error(path, "empty string");
  *out = std::move(s);
  return std::nullopt;
}

std::optional<LineError> TakeLabel(json& obj, const RecordOptions& options, Record* record) {
  auto it = obj.find("label");
  if (it == obj.end()) return Error("label", "missing");
  const int64_t num_labels = options.num_labels > 0
                                 ? options.num_labels
                                 : static_cast<int64_t>(options.label_names.size());
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error("label", absl::StrCat("label ", it->dump(), " is out of range"));
    }
    const int64_t id = it->get<int64_t>();
    if (id < 0) return Error("label", absl::StrCat("label ", id, " is negative"));
    if (num_labels > 0 && id >= num_labels) {
      return Error("label", absl::StrCat("label ", id, " is out of range: num_labels is ",
                                         num_labels, " (labels are 0..", num_labels - 1, ")"));
    }
    record->label = id;
    return std::nullopt;
  }
  if (!it->is_string()) {
    return Error("label", absl::StrCat("expected an integer or a label name, got ", TypeOf(*it)));
  }
  std::string& name = it->get_ref<std::string&>();
  if (name.empty()) return Error("label", "empty string");
  if (!options.label_names.empty()) {
    for (size_t i = 0; i < options.label_names.size(); ++i) {
      if (options.label_names[i] == name) {
        if (num_labels > 0 && static_cast<int64_t>(i) >= num_labels) {
          return Error("label", absl::StrCat("label name ", Quoted(name), " has id ", i,
                                             ", out of range: num_labels is ", num_labels));
        }
        record->label = static_cast<int64_t>(i);
        record->label_name = std::move(name);
        return std::nullopt;
      }
    }
    return Error("label", absl::StrCat("unknown label name ", Quoted(name),
                                       " (known: ", ListNames(options.label_names), ")"));
  }
  if (options.require_label_ids) {
    return Error("label", absl::StrCat("label name ", Quoted(name),
                                       " needs label_names in the job spec to map it to a class "
                                       "id; give label_names or use integer labels"));
  }
  record->label = -1;
  record->label_name = std::move(name);
  return std::nullopt;
}

std::optional<LineError> TakeMessages(json& obj, Record* record) {
  auto it = obj.find("messages");
  if (it == obj.end()) return Error("messages", "missing");
  if (!it->is_array()) {
    return Error("messages", absl::StrCat("expected an array, got ", TypeOf(*it)));
  }
  if (it->empty()) return Error("messages", "empty list");
  record->messages.reserve(it->size());
  bool has_assistant = false;
  for (size_t i = 0; i < it->size(); ++i) {
    json& m = (*it)[i];
    const std::string path = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return Error(path, absl::StrCat("expected an object, got ", TypeOf(m)));
    Message message;
    if (auto e = TakeString(m, "role", path + ".role", &message.role)) return e;
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      return Error(path + ".role", absl::StrCat("invalid role ", Quoted(message.role),
                                                " (expected system, user or assistant)"));
    }
    if (auto e = TakeString(m, "content", path + ".content", &message.content)) return e;
    has_assistant |= message.role == "assistant";
    record->messages.push_back(std::move(message));
  }
  if (!has_assistant) {
    return Error("messages",
                 "no assistant message: at least one is needed (the loss is on "
                 "assistant turns)");
  }
  return std::nullopt;
}

// The format a record's keys announce, if any.
std::optional<Format> DetectFormat(const json& obj) {
  if (obj.contains("messages")) return Format::kMessages;
  if (obj.contains("prompt") || obj.contains("completion")) return Format::kPromptCompletion;
  // "source" alone is common metadata beside "text" ({"text": ..., "source": "wiki"}): only
  // "target", or "input" without "text", announce an input/target pair.
  if (obj.contains("target") || (obj.contains("input") && !obj.contains("text"))) {
    return Format::kInputTarget;
  }
  if (obj.contains("text_pair")) return Format::kClassificationPair;
  if (obj.contains("label")) return Format::kClassification;
  if (obj.contains("text")) return Format::kText;
  return std::nullopt;
}

// True when every field `inner` requires is one `outer` requires too: a record that announces
// `inner` in an `outer` file is then an `outer` record with a field missing, not a mixed format.
bool IsSubsetOf(Format inner, Format outer) {
  switch (inner) {
    case Format::kText:
      return outer == Format::kClassification || outer == Format::kClassificationPair;
    case Format::kClassification:
      return outer == Format::kClassificationPair;
    default:
      return false;
  }
}

std::optional<LineError> ParseAs(json& obj, Format format, const RecordOptions& options,
                                 Record* record) {
  *record = Record();
  record->format = format;
  switch (format) {
    case Format::kText:
      return TakeString(obj, "text", "text", &record->text);
    case Format::kPromptCompletion:
      if (auto e = TakeString(obj, "prompt", "prompt", &record->prompt)) return e;
      return TakeString(obj, "completion", "completion", &record->completion);
    case Format::kMessages:
      return TakeMessages(obj, record);
    case Format::kClassification:
      if (auto e = TakeString(obj, "text", "text", &record->text)) return e;
      return TakeLabel(obj, options, record);
    case Format::kClassificationPair:
      if (auto e = TakeString(obj, "text", "text", &record->text)) return e;
      if (auto e = TakeString(obj, "text_pair", "text_pair", &record->text_pair)) return e;
      return TakeLabel(obj, options, record);
    case Format::kInputTarget: {
      // PEFT's and HF's seq2seq examples name the input "source" as often as "input".
      const char* input = !obj.contains("input") && obj.contains("source") ? "source" : "input";
      if (auto e = TakeString(obj, input, input, &record->input)) return e;
      return TakeString(obj, "target", "target", &record->target);
    }
    case Format::kUnknown:
      break;
  }
  return Error("", "no format to parse the record as");
}

// "syntax error while parsing value - invalid literal; last read: 'tru'" out of nlohmann's
// "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error ...", and
// "number overflow parsing '1e999'" out of "[json.exception.out_of_range.406] number ...".
std::string ParserMessage(const char* what) {
  std::string_view w(what);
  const size_t at = w.find("parse error");
  if (at != std::string_view::npos) {
    const size_t colon = w.find(": ", at);
    if (colon != std::string_view::npos) return std::string(w.substr(colon + 2));
  }
  if (!w.empty() && w[0] == '[') {
    const size_t close = w.find("] ");
    if (close != std::string_view::npos) return std::string(w.substr(close + 2));
  }
  return std::string(w);
}

bool IsBlank(std::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

}  // namespace

const char* FormatName(Format format) {
  switch (format) {
    case Format::kText:
      return "text";
    case Format::kPromptCompletion:
      return "prompt_completion";
    case Format::kMessages:
      return "messages";
    case Format::kClassification:
      return "classification";
    case Format::kClassificationPair:
      return "classification_pair";
    case Format::kInputTarget:
      return "input_target";
    case Format::kUnknown:
      break;
  }
  return "";
}

bool IsClassification(Format format) {
  return format == Format::kClassification || format == Format::kClassificationPair;
}

bool IsSeq2Seq(Format format) { return format == Format::kInputTarget; }

bool operator==(const LineError& a, const LineError& b) {
  return a.line == b.line && a.field == b.field && a.reason == b.reason;
}

std::string FormatLineError(const LineError& error) {
  if (error.field.empty()) return absl::StrCat("line ", error.line, ": ", error.reason);
  return absl::StrCat("line ", error.line, ": field \"", error.field, "\": ", error.reason);
}

std::string DescribeErrors(const std::string& name, const ValidationResult& result,
                           int max_listed) {
  if (result.ok()) return "";
  if (result.bad_lines == 0) {
    return absl::StrCat(name, ": no records (the file is empty); add one JSON object per line");
  }
  std::string out = absl::StrCat(name, ": ", result.bad_lines,
                                 result.bad_lines == 1 ? " bad line: " : " bad lines: ");
  const size_t listed =
      std::min(result.errors.size(), static_cast<size_t>(std::max(max_listed, 0)));
  for (size_t i = 0; i < listed; ++i) {
    if (i > 0) absl::StrAppend(&out, "; ");
    absl::StrAppend(&out, FormatLineError(result.errors[i]));
  }
  if (result.bad_lines > static_cast<int64_t>(listed)) {
    absl::StrAppend(&out, "; and ", result.bad_lines - static_cast<int64_t>(listed), " more");
  }
  return out;
}

namespace {

// ParseRecordLine; `format_line` (when > 0) is the line that set `expected`, for the message.
std::optional<LineError> ParseLine(std::string_view line, Format expected, int64_t format_line,
                                   const RecordOptions& options, Record* record) {
  json obj;
  try {
    obj = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    return Error("",
                 absl::StrCat("invalid JSON at column ", e.byte, ": ", ParserMessage(e.what())));
  } catch (const json::exception& e) {  // e.g. out_of_range: a number too large for a double
    return Error("", absl::StrCat("invalid JSON: ", ParserMessage(e.what())));
  }
  if (!obj.is_object()) {
    return Error("", absl::StrCat("expected a JSON object, got ", TypeOf(obj)));
  }
  const std::optional<Format> announced = DetectFormat(obj);
  if (expected == Format::kUnknown) {
    if (!announced) {
      std::vector<std::string> keys;
      for (auto it = obj.begin(); it != obj.end() && keys.size() < kMaxNamesListed; ++it) {
        keys.push_back(Quoted(it.key()));
      }
      return Error("", absl::StrCat("no record field: expected \"text\", \"prompt\" and "
                                    "\"completion\", \"messages\", or \"text\" and \"label\"",
                                    keys.empty() ? std::string(" (the object is empty)")
                                                 : absl::StrCat(" (found ",
                                                                absl::StrJoin(keys, ", "), ")")));
    }
    return ParseAs(obj, *announced, options, record);
  }
  if (announced && *announced != expected && !IsSubsetOf(*announced, expected)) {
    // A record of another format (not a record of this format with a field missing) is reported
    // as such: that is the mistake to fix.
    json copy = obj;
    Record other;
    if (!ParseAs(copy, *announced, options, &other)) {
      return Error(
          "",
          absl::StrCat("a ", FormatName(*announced), " record in a ", FormatName(expected), " file",
                       format_line > 0 ? absl::StrCat(" (line ", format_line, " set the format)")
                                       : std::string(),
                       "; use one format per file"));
    }
  }
  return ParseAs(obj, expected, options, record);
}

}  // namespace

std::optional<LineError> ParseRecordLine(std::string_view line, Format expected,
                                         const RecordOptions& options, Record* record) {
  return ParseLine(line, expected, 0, options, record);
}

RecordValidator::RecordValidator(RecordOptions options, RecordSink sink)
    : options_(std::move(options)), sink_(std::move(sink)) {}

absl::Status RecordValidator::Feed(std::string_view bytes) {
  if (finished_) return absl::FailedPreconditionError("RecordValidator: Feed after Finish");
  if (!stream_error_.ok()) return stream_error_;
  if (options_.max_total_bytes > 0 &&
      result_.bytes + static_cast<int64_t>(bytes.size()) > options_.max_total_bytes) {
    stream_error_ = absl::ResourceExhaustedError(
        absl::StrCat("dataset is larger than the limit of ", options_.max_total_bytes,
                     " bytes; split it or raise the server's dataset size limit"));
    return stream_error_;
  }
  result_.bytes += static_cast<int64_t>(bytes.size());
  const int64_t max_line = options_.max_line_bytes;
  while (!bytes.empty()) {
    const void* nl = std::memchr(bytes.data(), '\n', bytes.size());
    const size_t n = nl ? static_cast<const char*>(nl) - bytes.data() : bytes.size();
    std::string_view piece = bytes.substr(0, n);
    if (!pending_too_long_) {
      if (max_line > 0 && static_cast<int64_t>(pending_.size() + piece.size()) > max_line) {
        pending_too_long_ = true;
        pending_.clear();
        pending_.shrink_to_fit();
      } else if (nl && pending_.empty()) {
        // The whole line is in this chunk: no copy.
        ++result_.lines;
        ProcessLine(piece);
        bytes.remove_prefix(n + 1);
        continue;
      } else {
        pending_.append(piece);
      }
    }
    if (!nl) break;
    EndLine();
    bytes.remove_prefix(n + 1);
  }
  return absl::OkStatus();
}

void RecordValidator::EndLine() {
  ++result_.lines;
  if (pending_too_long_) {
    pending_too_long_ = false;
    for (int64_t line : empty_lines_) AddError(line, "", "empty line");
    empty_lines_.clear();
    AddError(result_.lines, "",
             absl::StrCat("line is longer than the limit of ", options_.max_line_bytes, " bytes"));
    return;
  }
  std::string line = std::move(pending_);
  pending_.clear();
  ProcessLine(line);
}

void RecordValidator::ProcessLine(std::string_view line) {
  const int64_t number = result_.lines;
  if (number == 1 && line.substr(0, 3) == kBom) line.remove_prefix(3);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (IsBlank(line)) {
    empty_lines_.push_back(number);
    return;
  }
  for (int64_t empty : empty_lines_) AddError(empty, "", "empty line");
  empty_lines_.clear();
  Record record;
  if (auto error = ParseLine(line, result_.format, format_line_, options_, &record)) {
    AddError(number, std::move(error->field), std::move(error->reason));
    return;
  }
  if (result_.format == Format::kUnknown) {
    result_.format = record.format;
    format_line_ = number;
  }
  ++result_.records;
  if (sink_) sink_(number, std::move(record));
}

void RecordValidator::AddError(int64_t line, std::string field, std::string reason) {
  ++result_.bad_lines;
  if (options_.max_errors <= 0 ||
      static_cast<int64_t>(result_.errors.size()) < options_.max_errors) {
    result_.errors.push_back(LineError{line, ValidUtf8(field), ValidUtf8(reason)});
  }
}

ValidationResult RecordValidator::Finish() {
  if (!finished_) {
    finished_ = true;
    if (stream_error_.ok() && (!pending_.empty() || pending_too_long_)) EndLine();
    empty_lines_.clear();  // trailing empty lines are not errors
  }
  return result_;
}

ValidationResult ValidateRecords(std::string_view bytes, const RecordOptions& options,
                                 RecordValidator::RecordSink sink) {
  RecordValidator validator(options, std::move(sink));
  (void)validator.Feed(bytes);
  return validator.Finish();
}

absl::StatusOr<ValidationResult> ValidateRecordFile(const std::string& path,
                                                    const RecordOptions& options,
                                                    RecordValidator::RecordSink sink) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    const std::string why = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(why);
    if (err == EACCES) return absl::PermissionDeniedError(why);
    return absl::InternalError(why);
  }
  RecordValidator validator(options, std::move(sink));
  std::string block(1 << 20, '\0');
  absl::Status status;
  while (status.ok()) {
    const size_t n = std::fread(block.data(), 1, block.size(), f);
    if (n > 0) status = validator.Feed(std::string_view(block.data(), n));
    if (n < block.size()) break;
  }
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  if (read_error) return absl::InternalError(absl::StrCat(path, ": read error"));
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return validator.Finish();
}

}  // namespace peftd::data
