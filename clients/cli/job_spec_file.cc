#include "clients/cli/job_spec_file.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using json = nlohmann::ordered_json;

// Field path ("lora.r", "target_modules[1]") -> 1-based line, for YAML files.
using LineMap = std::map<std::string, int>;

std::string Child(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string Show(const json& v) {
  if (v.is_string()) return "'" + v.get<std::string>() + "'";
  if (v.is_object()) return "a mapping";
  if (v.is_array()) return "a list";
  return v.dump();
}

int EditDistance(const std::string& a, const std::string& b) {
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diagonal = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// YAML -> JSON with every scalar kept as a string (the field's type decides later) and the line
// of every key and list item recorded.
absl::StatusOr<json> YamlToJson(const YAML::Node& node, const std::string& path, LineMap* lines) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat(kv.first.Mark().line + 1, ": keys must be plain names"));
        }
        std::string key = kv.first.Scalar();
        std::string child = Child(path, key);
        (*lines)[child] = kv.first.Mark().line + 1;
        auto value = YamlToJson(kv.second, child, lines);
        if (!value.ok()) return value.status();
        out[key] = *std::move(value);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        std::string child = absl::StrCat(path, "[", i, "]");
        (*lines)[child] = node[i].Mark().line + 1;
        auto value = YamlToJson(node[i], child, lines);
        if (!value.ok()) return value.status();
        out.push_back(*std::move(value));
      }
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      bool plain = node.Tag() == "?";
      if (plain && (s == "~" || s == "null" || s == "Null" || s == "NULL" || s.empty())) {
        return json(nullptr);
      }
      return json(s);
    }
    default:
      return json(nullptr);
  }
}

// Checks a JSON tree against a message descriptor and rewrites it into the exact protobuf JSON
// (numbers from strings, canonical enum names), so that errors can name the field and the line
// before protobuf's parser, whose messages do neither, sees it.
class Normalizer {
 public:
  Normalizer(std::string name, const LineMap* lines) : name_(std::move(name)), lines_(lines) {}

  absl::Status Message(const Descriptor* d, const json& in, const std::string& path, json* out) {
    if (!in.is_object()) return Error(path, "expected a mapping of fields, got " + Show(in));
    *out = json::object();
    std::map<const google::protobuf::OneofDescriptor*, std::string> oneofs_set;
    for (const auto& [key, value] : in.items()) {
      const std::string child = Child(path, key);
      const FieldDescriptor* f = FindField(d, key);
      if (f == nullptr) return Error(child, UnknownField(d, key));
      if (value.is_null()) continue;
      if (const auto* oneof = f->real_containing_oneof()) {
        auto [it, inserted] = oneofs_set.emplace(oneof, f->name());
        if (!inserted) {
          return Error(child, absl::StrCat("'", it->second, "' and '", f->name(),
                                           "' are both set: give the parameters of one ",
                                           oneof->name(), " only"));
        }
      }
      json& slot = (*out)[f->name()];
      if (f->is_map()) {
        if (!value.is_object()) return Error(child, "expected a mapping, got " + Show(value));
        slot = json::object();
        const FieldDescriptor* vf = f->message_type()->map_value();
        for (const auto& [k, v] : value.items()) {
          RETURN_IF_ERROR(Value(vf, v, Child(child, k), &slot[k]));
        }
      } else if (f->is_repeated()) {
        // A single value where a list is expected is a list of one.
        json list = value.is_array() ? value : json::array({value});
        slot = json::array();
        for (size_t i = 0; i < list.size(); ++i) {
          json item;
          RETURN_IF_ERROR(Value(f, list[i], absl::StrCat(child, "[", i, "]"), &item));
          slot.push_back(std::move(item));
        }
      } else {
        RETURN_IF_ERROR(Value(f, value, child, &slot));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Error(const std::string& path, const std::string& what) const {
    std::string where = name_;
    // The line of the field, or of the nearest enclosing field that has one.
    for (std::string p = path; !p.empty();) {
      auto it = lines_ ? lines_->find(p) : LineMap::const_iterator();
      if (lines_ && it != lines_->end()) {
        absl::StrAppend(&where, ":", it->second);
        break;
      }
      size_t cut = p.find_last_of(".[");
      p = cut == std::string::npos ? "" : p.substr(0, cut);
    }
    return absl::InvalidArgumentError(path.empty() ? absl::StrCat(where, ": ", what)
                                                   : absl::StrCat(where, ": ", path, ": ", what));
  }

 private:
  static const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
    if (const FieldDescriptor* f = d->FindFieldByName(key)) return f;
    for (int i = 0; i < d->field_count(); ++i) {
      if (d->field(i)->json_name() == key) return d->field(i);
    }
    return nullptr;
  }

  static std::string UnknownField(const Descriptor* d, const std::string& key) {
    std::string best;
    int best_distance = 3;
    for (int i = 0; i < d->field_count(); ++i) {
      int distance = EditDistance(key, d->field(i)->name());
      if (distance < best_distance) {
        best_distance = distance;
        best = d->field(i)->name();
      }
    }
    std::string what = absl::StrCat("unknown field of ", d->name());
    if (!best.empty()) return absl::StrCat(what, "; did you mean '", best, "'?");
    return absl::StrCat(what, " (field names are those of ", d->name(),
                        " in proto/peftd/v1/job.proto)");
  }

  absl::Status Value(const FieldDescriptor* f, const json& in, const std::string& path, json* out) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return Message(f->message_type(), in, path, out);
      case FieldDescriptor::CPPTYPE_STRING:
        if (!in.is_string()) {
          return Error(path, "expected a string, got " + Show(in) +
                                 (in.is_number() ? " (put it in quotes)" : ""));
        }
        *out = in;
        return absl::OkStatus();
      case FieldDescriptor::CPPTYPE_BOOL: {
        if (in.is_boolean()) {
          *out = in;
          return absl::OkStatus();
        }
        std::string s = in.is_string() ? absl::AsciiStrToLower(in.get<std::string>()) : "";
        if (s == "true" || s == "false") {
          *out = s == "true";
          return absl::OkStatus();
        }
        return Error(path, "expected true or false, got " + Show(in));
      }
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
        return Integer(f, in, path, out);
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        double v = 0;
        bool ok = in.is_number()   ? (v = in.get<double>(), true)
                  : in.is_string() ? absl::SimpleAtod(in.get<std::string>(), &v)
                                   : false;
        if (!ok || !std::isfinite(v)) return Error(path, "expected a number, got " + Show(in));
        *out = v;
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM:
        return Enum(f->enum_type(), in, path, out);
    }
    return Error(path, "unsupported field type");
  }

  absl::Status Integer(const FieldDescriptor* f, const json& in, const std::string& path,
                       json* out) {
    const bool is_unsigned = f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 ||
                             f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
    const bool is_32 = f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 ||
                       f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32;
    const std::string expected = is_unsigned ? "a non-negative integer" : "an integer";
    int64_t v = 0;
    uint64_t u = 0;
    bool ok = false;
    if (in.is_number_unsigned()) {
      u = in.get<uint64_t>();
      ok = is_unsigned || u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      v = static_cast<int64_t>(u);
    } else if (in.is_number_integer()) {
      v = in.get<int64_t>();
      ok = !is_unsigned || v >= 0;
      u = static_cast<uint64_t>(v);
    } else if (in.is_number_float()) {
      double d = in.get<double>();
      ok =
          std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15 && (!is_unsigned || d >= 0);
      v = static_cast<int64_t>(d);
      u = static_cast<uint64_t>(v);
    } else if (in.is_string()) {
      const std::string s(absl::StripAsciiWhitespace(in.get<std::string>()));
      ok = is_unsigned ? absl::SimpleAtoi(s, &u) : absl::SimpleAtoi(s, &v);
      if (is_unsigned)
        v = static_cast<int64_t>(u);
      else
        u = static_cast<uint64_t>(v);
    }
    if (!ok) return Error(path, absl::StrCat("expected ", expected, ", got ", Show(in)));
    if (is_32) {
      bool in_range = is_unsigned ? u <= std::numeric_limits<uint32_t>::max()
                                  : v >= std::numeric_limits<int32_t>::min() &&
                                        v <= std::numeric_limits<int32_t>::max();
      if (!in_range) return Error(path, absl::StrCat("out of range: ", Show(in)));
    }
    if (is_unsigned) {
      *out = u;
    } else {
      *out = v;
    }
    return absl::OkStatus();
  }

  absl::Status Enum(const EnumDescriptor* e, const json& in, const std::string& path, json* out) {
    const google::protobuf::EnumValueDescriptor* value = nullptr;
    if (in.is_string()) {
      std::string name = absl::AsciiStrToUpper(
          absl::StrReplaceAll(absl::StripAsciiWhitespace(in.get<std::string>()), {{"-", "_"}}));
      value = e->FindValueByName(name);
    } else if (in.is_number_integer()) {
      value = e->FindValueByNumber(in.get<int>());
    }
    if (value == nullptr || value->number() == 0) {
      std::vector<std::string> names;
      for (int i = 0; i < e->value_count(); ++i) {
        if (e->value(i)->number() != 0) names.push_back(absl::AsciiStrToLower(e->value(i)->name()));
      }
      return Error(
          path, absl::StrCat("unknown value ", Show(in), ": one of ", absl::StrJoin(names, ", ")));
    }
    *out = value->name();
    return absl::OkStatus();
  }

  std::string name_;
  const LineMap* lines_;
};

// The 1-based line of byte `offset` in `text`.
int LineOf(absl::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + offset, '\n'));
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text, absl::string_view name,
                                         JobFileFormat format) {
  const std::string file(name);
  json tree;
  LineMap lines;
  if (format == JobFileFormat::kYaml) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
    }
    if (!root.IsDefined() || root.IsNull()) {
      return absl::InvalidArgumentError(file +
                                        ": the file is empty; expected the fields of a "
                                        "JobSpec (base_model, method, ...)");
    }
    auto converted = YamlToJson(root, "", &lines);
    if (!converted.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ":", converted.status().message()));
    }
    tree = *std::move(converted);
  } else {
    try {
      tree = json::parse(text.begin(), text.end());
    } catch (const json::parse_error& e) {
      std::string what = e.what();
      // nlohmann's text is "[json.exception.parse_error.101] parse error at line 3, column 5: ...".
      size_t colon = what.find("syntax error");
      return absl::InvalidArgumentError(
          absl::StrCat(file, ":", LineOf(text, e.byte > 0 ? e.byte - 1 : 0),
                       ": invalid JSON: ", colon == std::string::npos ? what : what.substr(colon)));
    }
  }
  Normalizer normalizer(file, format == JobFileFormat::kYaml ? &lines : nullptr);
  json normalized;
  absl::Status status = normalizer.Message(v1::JobSpec::descriptor(), tree, "", &normalized);
  if (!status.ok()) return status;

  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed = google::protobuf::util::JsonStringToMessage(normalized.dump(), &spec, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", parsed.message().ToString()));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("-f: cannot read job file '", path, "': check the path"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  JobFileFormat format;
  std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".json")) {
    format = JobFileFormat::kJson;
  } else if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml")) {
    format = JobFileFormat::kYaml;
  } else {
    absl::string_view stripped = absl::StripLeadingAsciiWhitespace(text);
    format = !stripped.empty() && stripped[0] == '{' ? JobFileFormat::kJson : JobFileFormat::kYaml;
  }
  return ParseJobSpec(text, path, format);
}

}  // namespace peftd::cli
