// Typed access to tokenizer.json fields with errors that name the JSON path
// ("tokenizer.json: model.byte_fallback must be a boolean"). Absent and null fields take the
// default the Hugging Face deserializer uses.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_JSON_FIELDS_H_
#define PEFTD_WORKER_DATA_TOKENIZER_JSON_FIELDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace peftd::data {

// The field, or nullptr when absent or null. `obj` must be an object.
const nlohmann::json* FindField(const nlohmann::json& obj, const char* key);
absl::Status FieldError(const std::string& path, const std::string& message);

absl::StatusOr<std::string> StringField(const nlohmann::json& obj, const std::string& path,
                                        const char* key, const std::string& fallback);
absl::StatusOr<bool> BoolField(const nlohmann::json& obj, const std::string& path, const char* key,
                               bool fallback);
absl::StatusOr<int64_t> IntField(const nlohmann::json& obj, const std::string& path,
                                 const char* key, int64_t fallback);
// "type" of a component object at `path` (which must be an object with a string type).
absl::StatusOr<std::string> TypeField(const nlohmann::json& obj, const std::string& path);
// A HF pattern object {"String": s} or {"Regex": r}: sets *is_regex.
absl::StatusOr<std::string> PatternField(const nlohmann::json& obj, const std::string& path,
                                         const char* key, bool* is_regex);
// path + "." + key, without a leading dot for the root.
std::string JoinPath(const std::string& path, const std::string& key);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_JSON_FIELDS_H_
