#include "common/model_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/model_config_deberta.h"
#include "common/model_config_encoders.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace peftd::model {
namespace {

using nlohmann::json;

const char* const kArchitectures[] = {
    "LlamaForCausalLM",   "LlamaForSequenceClassification",
    "MistralForCausalLM", "MistralForSequenceClassification",
    "Qwen2ForCausalLM",   "Qwen2ForSequenceClassification",
    "GPT2LMHeadModel",    "T5ForConditionalGeneration",
};

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, ": ", why));
}

template <typename T>
absl::Status Get(const json& j, const char* key, T* out, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    return required ? Bad(key, "missing") : absl::OkStatus();
  }
  try {
    *out = j[key].get<T>();
  } catch (const json::exception&) {
    return Bad(key, "has the wrong type");
  }
  return absl::OkStatus();
}

// Integers are read as integers only (nlohmann would truncate 2.5 and overflow on 1e30), within
// +-2^31 so that no later arithmetic on them can overflow.
absl::Status Get(const json& j, const char* key, int64_t* out, bool required) {
  constexpr int64_t kMaxInt = int64_t{1} << 31;
  if (!j.contains(key) || j[key].is_null()) {
    return required ? Bad(key, "missing") : absl::OkStatus();
  }
  const json& v = j[key];
  if (!v.is_number_integer()) return Bad(key, "has the wrong type (expected an integer)");
  if ((v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(kMaxInt)) ||
      (!v.is_number_unsigned() && (v.get<int64_t>() > kMaxInt || v.get<int64_t>() < -kMaxInt))) {
    return Bad(key, absl::StrCat(v.dump(), " is out of range"));
  }
  *out = v.get<int64_t>();
  return absl::OkStatus();
}

// Token ids may be a number or a list (Llama 3 lists several EOS ids): keep the first.
absl::Status GetTokenId(const json& j, const char* key, int64_t* out) {
  if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
  const json& v = j[key];
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
  } else if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
    *out = v[0].get<int64_t>();
  } else {
    return Bad(key, "must be an integer or a list of integers");
  }
  return absl::OkStatus();
}

// The LLaMA family's own fields (hidden_size, num_key_value_heads, rope_theta, ...).
absl::Status ParseLlamaFields(const json& j, ModelConfig* c) {
  RETURN_IF_ERROR(Get(j, "model_type", &c->model_type, false));
  RETURN_IF_ERROR(Get(j, "vocab_size", &c->vocab_size, true));
  RETURN_IF_ERROR(Get(j, "hidden_size", &c->hidden_size, true));
  RETURN_IF_ERROR(Get(j, "intermediate_size", &c->intermediate_size, true));
  RETURN_IF_ERROR(Get(j, "num_hidden_layers", &c->num_hidden_layers, true));
  RETURN_IF_ERROR(Get(j, "num_attention_heads", &c->num_attention_heads, true));
  c->num_key_value_heads = c->num_attention_heads;
  RETURN_IF_ERROR(Get(j, "num_key_value_heads", &c->num_key_value_heads, false));
  RETURN_IF_ERROR(Get(j, "rms_norm_eps", &c->rms_norm_eps, false));
  RETURN_IF_ERROR(Get(j, "rope_theta", &c->rope_theta, false));
  RETURN_IF_ERROR(Get(j, "max_position_embeddings", &c->max_position_embeddings, false));
  RETURN_IF_ERROR(Get(j, "tie_word_embeddings", &c->tie_word_embeddings, false));
  c->attention_bias = c->model_type == "qwen2" || c->architecture.rfind("Qwen2", 0) == 0;
  RETURN_IF_ERROR(Get(j, "attention_bias", &c->attention_bias, false));
  if (c->architecture.rfind("Llama", 0) == 0) {
    c->o_proj_bias = c->attention_bias;
    RETURN_IF_ERROR(Get(j, "mlp_bias", &c->mlp_bias, false));
  }
  return absl::OkStatus();
}

// Head layout and RoPE of the LLaMA family, after the dimensions were checked.
absl::Status ParseLlamaShape(const json& j, ModelConfig* c) {
  if (c->num_attention_heads % c->num_key_value_heads != 0) {
    return Bad("num_key_value_heads",
               absl::StrCat(c->num_key_value_heads, " does not divide num_attention_heads ",
                            c->num_attention_heads));
  }
  c->head_dim = c->hidden_size / c->num_attention_heads;
  RETURN_IF_ERROR(Get(j, "head_dim", &c->head_dim, false));
  if (c->head_dim < 2 || c->head_dim % 2 != 0 || c->head_dim > (int64_t{1} << 12))
    return Bad("head_dim", "must be even, >= 2 (RoPE rotates pairs) and <= 4096");
  if (!j.contains("head_dim") && c->hidden_size % c->num_attention_heads != 0) {
    return Bad("num_attention_heads", "does not divide hidden_size");
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    if (!rs.is_object()) return Bad("rope_scaling", "must be an object");
    std::string type;
    for (const char* key : {"type", "rope_type"}) {  // rope_type wins when both are given
      if (!rs.contains(key)) continue;
      if (!rs[key].is_string()) return Bad("rope_scaling", absl::StrCat(key, " must be a string"));
      type = rs[key].get<std::string>();
    }
    if (type == "llama3") {
      Llama3RopeScaling s;
      RETURN_IF_ERROR(Get(rs, "factor", &s.factor, true));
      RETURN_IF_ERROR(Get(rs, "low_freq_factor", &s.low_freq_factor, true));
      RETURN_IF_ERROR(Get(rs, "high_freq_factor", &s.high_freq_factor, true));
      RETURN_IF_ERROR(
          Get(rs, "original_max_position_embeddings", &s.original_max_position_embeddings, true));
      c->llama3_rope = s;
    } else if (type != "default") {
      return Bad("rope_scaling", absl::StrCat("rope_type '", type,
                                              "' is not supported (supported: default, llama3)"));
    }
  }
  return absl::OkStatus();
}

// GPT-2's own field names (n_embd, n_layer, ...) into the common fields. Options of HF's GPT2
// attention other than the defaults change the math and are refused by name.
absl::Status ParseGpt2(const json& j, ModelConfig* c) {
  c->model_type = "gpt2";
  RETURN_IF_ERROR(Get(j, "vocab_size", &c->vocab_size, true));
  RETURN_IF_ERROR(Get(j, "n_embd", &c->hidden_size, true));
  RETURN_IF_ERROR(Get(j, "n_layer", &c->num_hidden_layers, true));
  RETURN_IF_ERROR(Get(j, "n_head", &c->num_attention_heads, true));
  RETURN_IF_ERROR(Get(j, "n_positions", &c->max_position_embeddings, true));
  c->num_key_value_heads = c->num_attention_heads;
  c->intermediate_size = 4 * c->hidden_size;  // n_inner: null means 4 * n_embd
  RETURN_IF_ERROR(Get(j, "n_inner", &c->intermediate_size, false));
  RETURN_IF_ERROR(Get(j, "layer_norm_epsilon", &c->layer_norm_epsilon, false));
  RETURN_IF_ERROR(Get(j, "activation_function", &c->activation_function, false));
  if (c->activation_function == "gelu_pytorch_tanh") c->activation_function = "gelu_new";
  if (c->activation_function != "gelu_new" && c->activation_function != "gelu") {
    return Bad("activation_function", absl::StrCat("'", c->activation_function,
                                                   "' is not supported (supported: gelu_new, "
                                                   "gelu_pytorch_tanh, gelu)"));
  }
  c->tie_word_embeddings = true;  // GPT2Config's default
  RETURN_IF_ERROR(Get(j, "tie_word_embeddings", &c->tie_word_embeddings, false));
  bool flag = true;
  RETURN_IF_ERROR(Get(j, "scale_attn_weights", &flag, false));
  if (!flag) return Bad("scale_attn_weights", "false is not supported");
  for (const char* key :
       {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"}) {
    flag = false;
    RETURN_IF_ERROR(Get(j, key, &flag, false));
    if (flag) return Bad(key, "true is not supported");
  }
  c->attention_bias = true;  // every Conv1D has a bias
  c->o_proj_bias = true;
  c->mlp_bias = true;
  if (c->max_position_embeddings < 1 || c->max_position_embeddings > (int64_t{1} << 20)) {
    return Bad("n_positions", "must be in [1, 2^20]");
  }
  if (c->layer_norm_epsilon <= 0) return Bad("layer_norm_epsilon", "must be > 0");
  return absl::OkStatus();
}

// T5Config's names (d_model, d_ff, num_layers, ...) into the common fields, with T5Config's
// defaults for what a config.json leaves out. feed_forward_proj is "ACT" or "gated-ACT", as
// T5Config splits it ("gated-gelu" means gelu_new).
absl::Status ParseT5(const json& j, ModelConfig* c) {
  c->model_type = "t5";
  RETURN_IF_ERROR(Get(j, "vocab_size", &c->vocab_size, true));
  RETURN_IF_ERROR(Get(j, "d_model", &c->hidden_size, true));
  RETURN_IF_ERROR(Get(j, "d_kv", &c->head_dim, true));
  RETURN_IF_ERROR(Get(j, "d_ff", &c->intermediate_size, true));
  RETURN_IF_ERROR(Get(j, "num_layers", &c->num_hidden_layers, true));
  RETURN_IF_ERROR(Get(j, "num_heads", &c->num_attention_heads, true));
  c->num_key_value_heads = c->num_attention_heads;
  c->num_decoder_layers = c->num_hidden_layers;
  RETURN_IF_ERROR(Get(j, "num_decoder_layers", &c->num_decoder_layers, false));
  RETURN_IF_ERROR(
      Get(j, "relative_attention_num_buckets", &c->relative_attention_num_buckets, false));
  RETURN_IF_ERROR(
      Get(j, "relative_attention_max_distance", &c->relative_attention_max_distance, false));
  c->layer_norm_epsilon = 1e-6;
  RETURN_IF_ERROR(Get(j, "layer_norm_epsilon", &c->layer_norm_epsilon, false));
  std::string proj = "relu";
  RETURN_IF_ERROR(Get(j, "feed_forward_proj", &proj, false));
  c->gated_feed_forward = proj.rfind("gated-", 0) == 0;
  c->activation_function = c->gated_feed_forward ? proj.substr(6) : proj;
  if (proj == "gated-gelu") c->activation_function = "gelu_new";
  if (c->activation_function != "relu" && c->activation_function != "gelu" &&
      c->activation_function != "gelu_new" && c->activation_function != "silu") {
    return Bad("feed_forward_proj",
               absl::StrCat("'", proj,
                            "' is not supported (supported: relu, gelu, gelu_new, silu, each "
                            "optionally as gated-ACT, e.g. gated-gelu)"));
  }
  c->tie_word_embeddings = true;  // T5Config's default; T5 v1.1 and flan-t5 write false
  RETURN_IF_ERROR(Get(j, "tie_word_embeddings", &c->tie_word_embeddings, false));
  c->pad_token_id = 0;
  c->eos_token_id = 1;
  c->decoder_start_token_id = 0;
  RETURN_IF_ERROR(GetTokenId(j, "decoder_start_token_id", &c->decoder_start_token_id));
  c->max_position_embeddings = 512;  // no learned positions: only a default for max_seq_len
  if (c->layer_norm_epsilon <= 0) return Bad("layer_norm_epsilon", "must be > 0");
  if (c->head_dim < 1 || c->head_dim > (int64_t{1} << 12))
    return Bad("d_kv", "must be in [1, 4096]");
  if (c->num_decoder_layers < 1 || c->num_decoder_layers > (int64_t{1} << 12)) {
    return Bad("num_decoder_layers", "must be in [1, 4096]");
  }
  if (c->relative_attention_num_buckets < 4 || c->relative_attention_num_buckets > 4096) {
    return Bad("relative_attention_num_buckets", "must be in [4, 4096]");
  }
  // Buckets past max_exact are logarithmic up to max_distance, which must lie beyond them.
  if (c->relative_attention_max_distance <= c->relative_attention_num_buckets / 4 ||
      c->relative_attention_max_distance > (int64_t{1} << 20)) {
    return Bad("relative_attention_max_distance",
               "must exceed relative_attention_num_buckets / 4 and be <= 2^20");
  }
  return absl::OkStatus();
}

int64_t T5NumParameters(const ModelConfig& c) {
  const int64_t d = c.hidden_size, inner = c.num_attention_heads * c.head_dim;
  const int64_t attention = d + 4 * d * inner;  // layer_norm + q, k, v, o
  const int64_t ff = d + (c.gated_feed_forward ? 3 : 2) * d * c.intermediate_size;
  const int64_t bias = c.relative_attention_num_buckets * c.num_attention_heads;
  int64_t total = c.vocab_size * d                                           // shared
                  + c.num_hidden_layers * (attention + ff) + bias + d        // encoder
                  + c.num_decoder_layers * (2 * attention + ff) + bias + d;  // decoder
  if (!c.tie_word_embeddings) total += c.vocab_size * d;
  return total;
}

}  // namespace

int64_t ModelConfig::NumParameters() const {
  if (IsRoberta()) return RobertaNumParameters(*this);
  if (IsDebertaV2()) return DebertaV2NumParameters(*this);
  if (IsT5()) return T5NumParameters(*this);
  if (IsGpt2()) {
    const int64_t h = hidden_size, inner = intermediate_size;
    const int64_t layer = 2 * h                // ln_1
                          + h * 3 * h + 3 * h  // attn.c_attn
                          + h * h + h          // attn.c_proj
                          + 2 * h              // ln_2
                          + h * inner + inner  // mlp.c_fc
                          + inner * h + h;     // mlp.c_proj
    int64_t total = (vocab_size + max_position_embeddings) * h + num_hidden_layers * layer + 2 * h;
    if (!tie_word_embeddings) total += vocab_size * h;
    return total;
  }
  const int64_t kv = num_key_value_heads * head_dim;
  const int64_t q = num_attention_heads * head_dim;
  int64_t layer = hidden_size * q + 2 * hidden_size * kv + q * hidden_size  // attention
                  + 3 * hidden_size * intermediate_size                     // mlp
                  + 2 * hidden_size;                                        // norms
  if (attention_bias) layer += q + 2 * kv;
  if (o_proj_bias) layer += hidden_size;
  if (mlp_bias) layer += 2 * intermediate_size + hidden_size;
  int64_t total = vocab_size * hidden_size + num_hidden_layers * layer + hidden_size;
  if (sequence_classification) {
    total += num_labels * hidden_size;
  } else if (!tie_word_embeddings) {
    total += vocab_size * hidden_size;
  }
  return total;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("config.json: not a JSON object");
  ModelConfig c;
  std::vector<std::string> archs;
  // DeBERTa-v3's published folders (microsoft/deberta-v3-base) name only model_type: the bare
  // encoder, which trains as a classifier with a new head.
  std::string model_type;
  RETURN_IF_ERROR(Get(j, "model_type", &model_type, false));
  if (model_type == "deberta-v2" && !j.contains("architectures")) {
    archs = {"DebertaV2Model"};
  } else {
    RETURN_IF_ERROR(Get(j, "architectures", &archs, true));
  }
  if (archs.empty()) return Bad("architectures", "empty");
  c.architecture = archs[0];
  bool known = IsRobertaArchitecture(c.architecture) || IsDebertaV2Architecture(c.architecture);
  for (const char* a : kArchitectures) known = known || c.architecture == a;
  if (!known) {
    return Bad("architectures",
               absl::StrCat("'", c.architecture,
                            "' is not supported (supported: the Llama, Mistral and Qwen2 "
                            "causal-LM and sequence-classification heads, GPT2LMHeadModel, "
                            "RobertaForSequenceClassification, DebertaV2ForSequenceClassification, "
                            "T5ForConditionalGeneration)"));
  }
  c.sequence_classification = c.architecture.find("SequenceClassification") != std::string::npos;
  const bool gpt2 = c.architecture == "GPT2LMHeadModel";
  const bool roberta = IsRobertaArchitecture(c.architecture);
  const bool t5 = c.architecture == "T5ForConditionalGeneration";
  const bool deberta = IsDebertaV2Architecture(c.architecture);
  if (gpt2) {
    RETURN_IF_ERROR(ParseGpt2(j, &c));
  } else if (roberta) {
    RETURN_IF_ERROR(ParseRobertaConfig(j, &c));
  } else if (deberta) {
    RETURN_IF_ERROR(ParseDebertaV2Config(j, &c));
  } else if (t5) {
    RETURN_IF_ERROR(ParseT5(j, &c));
  } else {
    RETURN_IF_ERROR(ParseLlamaFields(j, &c));
  }
  RETURN_IF_ERROR(Get(j, "torch_dtype", &c.torch_dtype, false));
  RETURN_IF_ERROR(GetTokenId(j, "bos_token_id", &c.bos_token_id));
  RETURN_IF_ERROR(GetTokenId(j, "eos_token_id", &c.eos_token_id));
  RETURN_IF_ERROR(GetTokenId(j, "pad_token_id", &c.pad_token_id));
  // Upper bounds far above any real model keep NumParameters() inside int64.
  const struct {
    const char* name;
    const char* gpt2_name;
    const char* t5_name;
    int64_t value, max;
  } dims[] = {
      {"vocab_size", "vocab_size", "vocab_size", c.vocab_size, int64_t{1} << 24},
      {"hidden_size", "n_embd", "d_model", c.hidden_size, int64_t{1} << 17},
      {"intermediate_size", "n_inner", "d_ff", c.intermediate_size, int64_t{1} << 20},
      {"num_hidden_layers", "n_layer", "num_layers", c.num_hidden_layers, int64_t{1} << 12},
      {"num_attention_heads", "n_head", "num_heads", c.num_attention_heads, int64_t{1} << 12},
      {"num_key_value_heads", "n_head", "num_heads", c.num_key_value_heads, int64_t{1} << 12}};
  for (const auto& d : dims) {
    const char* name = gpt2 ? d.gpt2_name : t5 ? d.t5_name : d.name;
    if (d.value < 1) return Bad(name, "must be >= 1");
    if (d.value > d.max) return Bad(name, absl::StrCat(d.value, " is over the limit of ", d.max));
  }
  if (gpt2) {
    if (c.hidden_size % c.num_attention_heads != 0) return Bad("n_head", "does not divide n_embd");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else if (roberta) {
    RETURN_IF_ERROR(CheckRobertaPositions(c));
  } else if (deberta) {
    RETURN_IF_ERROR(CheckDebertaV2PadToken(c));
  } else if (!t5) {  // T5's head layout was checked by ParseT5
    RETURN_IF_ERROR(ParseLlamaShape(j, &c));
  }
  if (c.sequence_classification) {
    if (j.contains("id2label") && j["id2label"].is_object()) {
      c.num_labels = static_cast<int64_t>(j["id2label"].size());
      c.id2label.resize(c.num_labels);
      for (const auto& [k, v] : j["id2label"].items()) {
        const int64_t idx = std::atoll(k.c_str());
        if (idx < 0 || idx >= c.num_labels || !v.is_string())
          return Bad("id2label", "keys must be 0..n-1");
        c.id2label[idx] = v.get<std::string>();
      }
    }
    RETURN_IF_ERROR(Get(j, "num_labels", &c.num_labels, false));
    if (c.num_labels < 1) return Bad("num_labels", "must be >= 1");
  }
  return c;
}

absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(
        absl::StrCat(path, ": not found (is ", model_dir, " a Hugging Face model folder?)"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = ParseModelConfig(ss.str());
  if (!c.ok()) return Annotate(c.status(), model_dir);
  return c;
}

std::string ModelConfigJson(const ModelConfig& c) {
  if (c.IsRoberta()) return RobertaConfigJson(c);
  if (c.IsDebertaV2()) return DebertaV2ConfigJson(c);
  if (c.IsT5()) {
    // T5Config.to_json_string's names.
    const std::string act = c.activation_function == "gelu_new" && c.gated_feed_forward
                                ? "gelu"
                                : c.activation_function;
    json j = {{"architectures", {"T5ForConditionalGeneration"}},
              {"model_type", "t5"},
              {"is_encoder_decoder", true},
              {"vocab_size", c.vocab_size},
              {"d_model", c.hidden_size},
              {"d_kv", c.head_dim},
              {"d_ff", c.intermediate_size},
              {"num_layers", c.num_hidden_layers},
              {"num_decoder_layers", c.num_decoder_layers},
              {"num_heads", c.num_attention_heads},
              {"relative_attention_num_buckets", c.relative_attention_num_buckets},
              {"relative_attention_max_distance", c.relative_attention_max_distance},
              {"layer_norm_epsilon", c.layer_norm_epsilon},
              {"feed_forward_proj", c.gated_feed_forward ? "gated-" + act : act},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"torch_dtype", c.torch_dtype.empty() ? "float32" : c.torch_dtype},
              {"pad_token_id", c.pad_token_id},
              {"eos_token_id", c.eos_token_id},
              {"decoder_start_token_id", c.decoder_start_token_id}};
    return j.dump(2);
  }
  if (c.IsGpt2()) {
    // GPT2Config.to_json_string's names.
    json j = {{"architectures", {"GPT2LMHeadModel"}},
              {"model_type", "gpt2"},
              {"vocab_size", c.vocab_size},
              {"n_embd", c.hidden_size},
              {"n_layer", c.num_hidden_layers},
              {"n_head", c.num_attention_heads},
              {"n_inner", c.intermediate_size},
              {"n_positions", c.max_position_embeddings},
              {"n_ctx", c.max_position_embeddings},
              {"layer_norm_epsilon", c.layer_norm_epsilon},
              {"activation_function", c.activation_function},
              {"scale_attn_weights", true},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"torch_dtype", c.torch_dtype.empty() ? "float32" : c.torch_dtype},
              {"bos_token_id", c.bos_token_id},
              {"eos_token_id", c.eos_token_id}};
    return j.dump(2);
  }
  json j = {{"architectures", {c.architecture}},
            {"model_type", c.model_type},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads},
            {"num_key_value_heads", c.num_key_value_heads},
            {"head_dim", c.head_dim},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"max_position_embeddings", c.max_position_embeddings},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"attention_bias", c.attention_bias},
            {"hidden_act", "silu"},
            {"torch_dtype", c.torch_dtype.empty() ? "float32" : c.torch_dtype},
            {"bos_token_id", c.bos_token_id},
            {"eos_token_id", c.eos_token_id}};
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  if (c.mlp_bias) j["mlp_bias"] = true;
  if (c.llama3_rope) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.llama3_rope->factor},
        {"low_freq_factor", c.llama3_rope->low_freq_factor},
        {"high_freq_factor", c.llama3_rope->high_freq_factor},
        {"original_max_position_embeddings", c.llama3_rope->original_max_position_embeddings}};
  }
  return j.dump(2);
}

}  // namespace peftd::model
