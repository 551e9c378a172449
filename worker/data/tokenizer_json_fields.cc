#include "worker/data/tokenizer_json_fields.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace peftd::data {

using nlohmann::json;

const json* FindField(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status FieldError(const std::string& path, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", path, " ", message));
}

std::string JoinPath(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

absl::StatusOr<std::string> StringField(const json& obj, const std::string& path, const char* key,
                                        const std::string& fallback) {
  const json* f = FindField(obj, key);
  if (f == nullptr) return fallback;
  if (!f->is_string()) return FieldError(JoinPath(path, key), "must be a string");
  return f->get<std::string>();
}

absl::StatusOr<bool> BoolField(const json& obj, const std::string& path, const char* key,
                               bool fallback) {
  const json* f = FindField(obj, key);
  if (f == nullptr) return fallback;
  if (!f->is_boolean()) return FieldError(JoinPath(path, key), "must be true or false");
  return f->get<bool>();
}

absl::StatusOr<int64_t> IntField(const json& obj, const std::string& path, const char* key,
                                 int64_t fallback) {
  const json* f = FindField(obj, key);
  if (f == nullptr) return fallback;
  if (!f->is_number_integer()) return FieldError(JoinPath(path, key), "must be an integer");
  return f->get<int64_t>();
}

absl::StatusOr<std::string> TypeField(const json& obj, const std::string& path) {
  if (!obj.is_object()) return FieldError(path, "must be an object with a \"type\"");
  const json* t = FindField(obj, "type");
  if (t == nullptr || !t->is_string())
    return FieldError(JoinPath(path, "type"), "must be a string");
  return t->get<std::string>();
}

absl::StatusOr<std::string> PatternField(const json& obj, const std::string& path, const char* key,
                                         bool* is_regex) {
  const std::string p = JoinPath(path, key);
  const json* f = FindField(obj, key);
  if (f == nullptr || !f->is_object() || f->size() != 1) {
    return FieldError(p, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  const auto it = f->begin();
  if ((it.key() != "String" && it.key() != "Regex") || !it.value().is_string()) {
    return FieldError(p, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  *is_regex = it.key() == "Regex";
  return it.value().get<std::string>();
}

}  // namespace peftd::data
