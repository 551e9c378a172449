#include "server/dataset_upload.h"

#include <nlohmann/json.hpp>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"

namespace peftd::server {
namespace {

using nlohmann::json;

constexpr int kErrorsInMessage = 10;
constexpr char kBadRequestUrl[] = "type.googleapis.com/google.rpc.BadRequest";

// The format a record's keys select, or "" when none matches.
std::string FormatOf(const json& r) {
  if (r.contains("messages")) return "messages";
  if (r.contains("prompt") || r.contains("completion")) return "prompt_completion";
  if (r.contains("label"))
    return r.contains("text_pair") ? "classification_pair" : "classification";
  if (r.contains("text")) return "text";
  return "";
}

bool NonEmptyString(const json& r, const char* key) {
  return r.contains(key) && r[key].is_string() && !r[key].get_ref<const std::string&>().empty();
}

}  // namespace

void DatasetUploadValidator::Error(const std::string& field, const std::string& reason) {
  ++error_count_;
  if (errors_.size() >= kMaxErrors) return;
  v1::DatasetLineError e;
  e.set_line(line_no_);
  e.set_field(field);
  e.set_reason(reason);
  errors_.push_back(std::move(e));
}

void DatasetUploadValidator::Feed(absl::string_view bytes) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    const absl::string_view piece = bytes.substr(0, nl);
    if (!overlong_) {
      if (partial_.size() + piece.size() > kMaxLineBytes) {
        overlong_ = true;
        partial_.clear();
      } else {
        partial_.append(piece.data(), piece.size());
      }
    }
    if (nl == absl::string_view::npos) return;
    ++line_no_;
    if (overlong_) {
      Error("", absl::StrCat("longer than ", kMaxLineBytes, " bytes; one record a line"));
    } else {
      Line(partial_);
    }
    partial_.clear();
    overlong_ = false;
    bytes.remove_prefix(nl + 1);
  }
}

void DatasetUploadValidator::Finish() {
  if (!partial_.empty() || overlong_) {  // a last line without a newline
    ++line_no_;
    if (overlong_) {
      Error("", absl::StrCat("longer than ", kMaxLineBytes, " bytes; one record a line"));
    } else {
      Line(partial_);
    }
  }
  partial_.clear();
  if (records_ == 0 && error_count_ == 0) {
    line_no_ = std::max<int64_t>(line_no_, 1);
    Error("", "the dataset has no records; upload a JSONL file with one JSON object a line");
  }
}

void DatasetUploadValidator::Line(absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == absl::string_view::npos) {
    Error("", "empty line; remove it (one JSON record a line)");
    return;
  }
  json r = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (r.is_discarded()) {
    Error("", "not valid JSON");
    return;
  }
  if (!r.is_object()) {
    Error("", "must be a JSON object");
    return;
  }
  const std::string format = FormatOf(r);
  if (format.empty()) {
    Error("", "no known fields: expected text, prompt+completion, messages, or text+label");
    return;
  }
  if (format_.empty()) {
    format_ = format;
    format_line_ = line_no_;
  } else if (format != format_) {
    Error("", absl::StrCat("a ", format, " record, but line ", format_line_, " is ", format_,
                           "; one format a file"));
    return;
  }
  const int64_t errors_before = error_count_;
  if (format == "text") {
    if (!NonEmptyString(r, "text")) Error("text", "must be a non-empty string");
  } else if (format == "prompt_completion") {
    if (!r.contains("prompt")) {
      Error("prompt", "missing");
    } else if (!r["prompt"].is_string()) {
      Error("prompt", "must be a string");
    }
    if (!r.contains("completion")) {
      Error("completion", "missing");
    } else if (!NonEmptyString(r, "completion")) {
      Error("completion", "must be a non-empty string");
    }
  } else if (format == "messages") {
    const json& m = r["messages"];
    if (!m.is_array() || m.empty()) {
      Error("messages", "must be a non-empty array of {role, content}");
    } else {
      for (size_t i = 0; i < m.size(); ++i) {
        const std::string field = absl::StrCat("messages[", i, "]");
        if (!m[i].is_object()) {
          Error(field, "must be an object {role, content}");
          continue;
        }
        if (!m[i].contains("role") || !m[i]["role"].is_string()) {
          Error(field + ".role", "missing");
        } else {
          const auto& role = m[i]["role"].get_ref<const std::string&>();
          if (role != "system" && role != "user" && role != "assistant") {
            Error(field + ".role", "'" + role + "' is not system, user or assistant");
          }
        }
        if (!m[i].contains("content") || !m[i]["content"].is_string()) {
          Error(field + ".content", "must be a string");
        }
      }
    }
  } else {  // classification, classification_pair
    if (!NonEmptyString(r, "text")) Error("text", "must be a non-empty string");
    if (format == "classification_pair" && !NonEmptyString(r, "text_pair")) {
      Error("text_pair", "must be a non-empty string");
    }
    const json& label = r["label"];
    if (!(label.is_number_integer() && label.get<int64_t>() >= 0) &&
        !(label.is_string() && !label.get_ref<const std::string&>().empty())) {
      Error("label", "must be an integer >= 0 or a label name");
    }
  }
  if (error_count_ == errors_before) ++records_;
}

absl::Status DatasetUploadValidator::ToStatus(const std::string& filename) const {
  if (error_count_ == 0) return absl::OkStatus();
  google::rpc::BadRequest details;
  std::string message =
      absl::StrCat(filename.empty() ? "dataset" : filename, ": ", error_count_,
                   error_count_ == 1 ? " bad line" : " bad lines", "; fix them and upload again:");
  int shown = 0;
  for (const auto& e : errors_) {
    std::string where = absl::StrCat("line ", e.line());
    std::string text = e.field().empty()
                           ? absl::StrCat(where, ": ", e.reason())
                           : absl::StrCat(where, ": field ", e.field(), ": ", e.reason());
    auto* v = details.add_field_violations();
    v->set_field(e.field().empty() ? where : absl::StrCat(where, ": ", e.field()));
    v->set_description(text);
    if (shown++ < kErrorsInMessage) absl::StrAppend(&message, "\n  ", text);
  }
  if (error_count_ > kErrorsInMessage) {
    absl::StrAppend(&message, "\n  ... and ", error_count_ - kErrorsInMessage, " more");
  }
  absl::Status st = absl::InvalidArgumentError(message);
  st.SetPayload(kBadRequestUrl, absl::Cord(details.SerializeAsString()));
  return st;
}

}  // namespace peftd::server
