// Reading config.json fields for the encoder families (model_config_encoders.cc,
// model_config_deberta.cc): errors that name the field, integers bounded like model_config.cc's,
// and optional fields of any JSON type.
#ifndef PEFTD_COMMON_CONFIG_JSON_H_
#define PEFTD_COMMON_CONFIG_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace peftd::model::config_json {

inline absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, ": ", why));
}

inline bool Present(const nlohmann::json& j, const char* key) {
  return j.contains(key) && !j[key].is_null();
}

// An integer field within +-2^31 (the bounds of model_config.cc, so no later product overflows).
inline absl::Status GetInt(const nlohmann::json& j, const char* key, int64_t* out, bool required) {
  if (!Present(j, key)) return required ? Bad(key, "missing") : absl::OkStatus();
  const nlohmann::json& v = j[key];
  if (!v.is_number_integer()) return Bad(key, "has the wrong type (expected an integer)");
  const int64_t limit = int64_t{1} << 31;
  if ((v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(limit)) ||
      (!v.is_number_unsigned() && (v.get<int64_t>() > limit || v.get<int64_t>() < -limit))) {
    return Bad(key, absl::StrCat(v.dump(), " is out of range"));
  }
  *out = v.get<int64_t>();
  return absl::OkStatus();
}

// An optional field of type T; absent or null leaves *out as it is.
template <typename T>
absl::Status GetValue(const nlohmann::json& j, const char* key, T* out) {
  if (!Present(j, key)) return absl::OkStatus();
  try {
    *out = j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    return Bad(key, "has the wrong type");
  }
  return absl::OkStatus();
}

}  // namespace peftd::model::config_json

#endif  // PEFTD_COMMON_CONFIG_JSON_H_
