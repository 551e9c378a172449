// Reading config.json fields for the encoder families (model_config_encoders.cc,
// model_config_deberta.cc): errors that name the field, integers bounded like model_config.cc's,
// optional fields of any JSON type, and the fields both encoders read alike.
#ifndef PEFTD_COMMON_CONFIG_JSON_H_
#define PEFTD_COMMON_CONFIG_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/status.h"
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

// The encoder's shape, every field required (BERT-style names); its KV heads are its heads.
inline absl::Status ReadEncoderShape(const nlohmann::json& j, ModelConfig* c) {
  RETURN_IF_ERROR(GetInt(j, "vocab_size", &c->vocab_size, true));
  RETURN_IF_ERROR(GetInt(j, "hidden_size", &c->hidden_size, true));
  RETURN_IF_ERROR(GetInt(j, "num_hidden_layers", &c->num_hidden_layers, true));
  RETURN_IF_ERROR(GetInt(j, "num_attention_heads", &c->num_attention_heads, true));
  RETURN_IF_ERROR(GetInt(j, "intermediate_size", &c->intermediate_size, true));
  c->num_key_value_heads = c->num_attention_heads;
  return absl::OkStatus();
}

// `problem_type`: only single-label classification (a cross-entropy head) is trained.
inline absl::Status CheckSingleLabel(const nlohmann::json& j) {
  std::string text = "single_label_classification";
  RETURN_IF_ERROR(GetValue(j, "problem_type", &text));
  if (text != "single_label_classification") {
    return Bad(
        "problem_type",
        absl::StrCat("'", text, "' is not supported (supported: single_label_classification)"));
  }
  return absl::OkStatus();
}

// head_dim = hidden_size / num_attention_heads (both at least 1), which must divide.
inline absl::Status SetEncoderHeadDim(ModelConfig* c) {
  if (c->hidden_size % c->num_attention_heads != 0) {
    return Bad("num_attention_heads", "does not divide hidden_size");
  }
  c->head_dim = c->hidden_size / c->num_attention_heads;
  return absl::OkStatus();
}

}  // namespace peftd::model::config_json

#endif  // PEFTD_COMMON_CONFIG_JSON_H_
