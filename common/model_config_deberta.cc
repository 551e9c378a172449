#include "common/model_config_deberta.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config_json.h"
#include "common/status.h"

namespace peftd::model {
namespace {

using nlohmann::json;

using config_json::Bad;
using config_json::CheckSingleLabel;
using config_json::GetInt;
using config_json::GetValue;
using config_json::Present;
using config_json::ReadEncoderShape;
using config_json::SetEncoderHeadDim;

// hidden_act / pooler_hidden_act: transformers' ACT2FN names this model computes.
absl::Status CheckActivation(const char* field, std::string* act, bool allow_tanh_relu) {
  if (*act == "gelu_pytorch_tanh") *act = "gelu_new";
  if (*act == "gelu" || *act == "gelu_new") return absl::OkStatus();
  if (allow_tanh_relu && (*act == "tanh" || *act == "relu")) return absl::OkStatus();
  return Bad(field, absl::StrCat("'", *act, "' is not supported (supported: gelu, gelu_new, ",
                                 "gelu_pytorch_tanh", allow_tanh_relu ? ", tanh, relu" : "", ")"));
}

// pos_att_type: a list (["p2c", "c2p"]) or DebertaV2Config's "p2c|c2p" string form.
absl::Status ParsePosAttType(const json& j, ModelConfig* c) {
  if (!Present(j, "pos_att_type")) return absl::OkStatus();
  std::vector<std::string> kinds;
  const json& v = j["pos_att_type"];
  if (v.is_string()) {
    for (absl::string_view part : absl::StrSplit(v.get<std::string>(), '|')) {
      kinds.push_back(absl::AsciiStrToLower(absl::StripAsciiWhitespace(part)));
    }
  } else if (v.is_array()) {
    for (const json& e : v) {
      if (!e.is_string()) return Bad("pos_att_type", "must be a list of strings or \"p2c|c2p\"");
      kinds.push_back(e.get<std::string>());
    }
  } else {
    return Bad("pos_att_type", "must be a list of strings or \"p2c|c2p\"");
  }
  for (const std::string& k : kinds) {
    if (k == "c2p") {
      c->pos_att_c2p = true;
    } else if (k == "p2c") {
      c->pos_att_p2c = true;
    } else {
      return Bad("pos_att_type", absl::StrCat("'", k,
                                              "' is not supported (supported: c2p, p2c; DeBERTa-v3 "
                                              "uses both)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsDebertaV2Architecture(const std::string& a) {
  return a == "DebertaV2ForSequenceClassification" || a == "DebertaV2ForMaskedLM" ||
         a == "DebertaV2Model";
}

absl::Status ParseDebertaV2Config(const json& j, ModelConfig* c) {
  c->model_type = "deberta-v2";
  RETURN_IF_ERROR(ReadEncoderShape(j, c));
  c->max_position_embeddings = 512;  // DebertaV2Config's defaults from here on
  RETURN_IF_ERROR(GetInt(j, "max_position_embeddings", &c->max_position_embeddings, false));
  c->type_vocab_size = 0;
  RETURN_IF_ERROR(GetInt(j, "type_vocab_size", &c->type_vocab_size, false));
  c->layer_norm_epsilon = 1e-7;
  RETURN_IF_ERROR(GetValue(j, "layer_norm_eps", &c->layer_norm_epsilon));
  c->activation_function = "gelu";
  RETURN_IF_ERROR(GetValue(j, "hidden_act", &c->activation_function));
  RETURN_IF_ERROR(CheckActivation("hidden_act", &c->activation_function, false));
  c->pooler_hidden_act = "gelu";
  RETURN_IF_ERROR(GetValue(j, "pooler_hidden_act", &c->pooler_hidden_act));
  RETURN_IF_ERROR(CheckActivation("pooler_hidden_act", &c->pooler_hidden_act, true));
  c->relative_attention = false;
  RETURN_IF_ERROR(GetValue(j, "relative_attention", &c->relative_attention));
  c->max_relative_positions = -1;
  RETURN_IF_ERROR(GetInt(j, "max_relative_positions", &c->max_relative_positions, false));
  if (c->max_relative_positions < 1) c->max_relative_positions = c->max_position_embeddings;
  c->position_buckets = -1;
  RETURN_IF_ERROR(GetInt(j, "position_buckets", &c->position_buckets, false));
  std::string text = "none";
  RETURN_IF_ERROR(GetValue(j, "norm_rel_ebd", &text));
  c->norm_rel_ebd_layer_norm = false;
  for (absl::string_view part : absl::StrSplit(absl::AsciiStrToLower(text), '|')) {
    part = absl::StripAsciiWhitespace(part);
    if (part == "layer_norm") {
      c->norm_rel_ebd_layer_norm = true;
    } else if (part != "none") {
      return Bad("norm_rel_ebd",
                 absl::StrCat("'", text, "' is not supported (supported: none, layer_norm)"));
    }
  }
  c->pos_att_c2p = c->pos_att_p2c = false;
  RETURN_IF_ERROR(ParsePosAttType(j, c));
  bool share_att_key = false;
  RETURN_IF_ERROR(GetValue(j, "share_att_key", &share_att_key));
  if (c->relative_attention && !share_att_key && (c->pos_att_c2p || c->pos_att_p2c)) {
    return Bad("share_att_key",
               "false is not supported (separate pos_key_proj / pos_query_proj, DeBERTa-v2's "
               "xlarge models); DeBERTa-v3 shares query_proj and key_proj (true)");
  }
  c->position_biased_input = true;
  RETURN_IF_ERROR(GetValue(j, "position_biased_input", &c->position_biased_input));
  int64_t conv = 0;
  RETURN_IF_ERROR(GetInt(j, "conv_kernel_size", &conv, false));
  if (conv > 0) return Bad("conv_kernel_size", "> 0 (ConvLayer, DeBERTa-v2) is not supported");
  RETURN_IF_ERROR(CheckSingleLabel(j));
  c->pad_token_id = 0;  // DebertaV2Config's default
  c->attention_bias = c->o_proj_bias = c->mlp_bias = true;
  if (c->hidden_size < 1 || c->num_attention_heads < 1) return absl::OkStatus();  // checked later
  RETURN_IF_ERROR(SetEncoderHeadDim(c));
  int64_t size = c->head_dim;
  RETURN_IF_ERROR(GetInt(j, "attention_head_size", &size, false));
  if (size != c->head_dim) {
    return Bad("attention_head_size",
               absl::StrCat(size, " is not supported: only hidden_size / num_attention_heads = ",
                            c->head_dim));
  }
  for (const char* key : {"embedding_size", "pooler_hidden_size"}) {
    size = c->hidden_size;
    RETURN_IF_ERROR(GetInt(j, key, &size, false));
    if (size != c->hidden_size) {
      return Bad(key,
                 absl::StrCat(size, " is not supported: only hidden_size (", c->hidden_size, ")"));
    }
  }
  if (c->type_vocab_size < 0 || c->type_vocab_size > 1024) {
    return Bad("type_vocab_size", "must be in [0, 1024]");
  }
  if (c->max_position_embeddings < 1 || c->max_position_embeddings > (int64_t{1} << 20)) {
    return Bad("max_position_embeddings", "must be in [1, 2^20]");
  }
  if (c->max_relative_positions > (int64_t{1} << 20)) {
    return Bad("max_relative_positions", "must be at most 2^20");
  }
  if (c->position_buckets > (int64_t{1} << 20)) {
    return Bad("position_buckets", "must be at most 2^20");
  }
  if (c->relative_attention && c->position_buckets > 0 &&
      (c->position_buckets < 2 || c->max_relative_positions <= c->position_buckets / 2 + 1)) {
    // make_log_bucket_position divides by log((max_relative_positions − 1) / (buckets / 2)).
    return Bad("position_buckets",
               absl::StrCat(c->position_buckets, " needs max_relative_positions (",
                            c->max_relative_positions, ") > position_buckets / 2 + 1"));
  }
  if (c->layer_norm_epsilon <= 0) return Bad("layer_norm_eps", "must be > 0");
  return absl::OkStatus();
}

absl::Status CheckDebertaV2PadToken(const ModelConfig& c) {
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size) {
    return Bad("pad_token_id",
               absl::StrCat(c.pad_token_id, " is outside the vocabulary (", c.vocab_size, ")"));
  }
  return absl::OkStatus();
}

int64_t DebertaV2RelEmbeddingRows(const ModelConfig& c) {
  if (!c.relative_attention) return 0;
  return 2 * (c.position_buckets > 0 ? c.position_buckets : c.max_relative_positions);
}

int64_t DebertaV2NumParameters(const ModelConfig& c) {
  const int64_t h = c.hidden_size, inner = c.intermediate_size;
  const int64_t layer = 4 * (h * h + h)      // query_proj, key_proj, value_proj, output.dense
                        + h * inner + inner  // intermediate.dense
                        + inner * h + h      // output.dense
                        + 4 * h;             // two LayerNorms
  int64_t total = c.vocab_size * h + c.type_vocab_size * h + 2 * h + c.num_hidden_layers * layer;
  if (c.position_biased_input) total += c.max_position_embeddings * h;
  total += DebertaV2RelEmbeddingRows(c) * h;
  if (c.relative_attention && c.norm_rel_ebd_layer_norm) total += 2 * h;
  if (c.sequence_classification) total += h * h + h + h * c.num_labels + c.num_labels;
  return total;
}

std::string DebertaV2ConfigJson(const ModelConfig& c) {
  json pos_att = json::array();
  if (c.pos_att_p2c) pos_att.push_back("p2c");
  if (c.pos_att_c2p) pos_att.push_back("c2p");
  json j = {{"architectures", {c.architecture}},
            {"model_type", "deberta-v2"},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads},
            {"intermediate_size", c.intermediate_size},
            {"hidden_act", c.activation_function},
            {"hidden_dropout_prob", 0.1},
            {"attention_probs_dropout_prob", 0.1},
            {"max_position_embeddings", c.max_position_embeddings},
            {"type_vocab_size", c.type_vocab_size},
            {"initializer_range", 0.02},
            {"layer_norm_eps", c.layer_norm_epsilon},
            {"relative_attention", c.relative_attention},
            {"max_relative_positions", c.max_relative_positions},
            {"position_buckets", c.position_buckets},
            {"norm_rel_ebd", c.norm_rel_ebd_layer_norm ? "layer_norm" : "none"},
            {"share_att_key", true},
            {"pos_att_type", pos_att},
            {"position_biased_input", c.position_biased_input},
            {"pooler_hidden_size", c.hidden_size},
            {"pooler_hidden_act", c.pooler_hidden_act},
            {"pooler_dropout", 0},
            {"torch_dtype", c.torch_dtype.empty() ? "float32" : c.torch_dtype},
            {"pad_token_id", c.pad_token_id}};
  if (c.sequence_classification) {
    json id2label = json::object(), label2id = json::object();
    for (int64_t i = 0; i < c.num_labels; ++i) {
      const std::string name =
          i < static_cast<int64_t>(c.id2label.size()) ? c.id2label[i] : absl::StrCat("LABEL_", i);
      id2label[std::to_string(i)] = name;
      label2id[name] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
  }
  return j.dump(2);
}

std::vector<LinearModule> DebertaV2LinearModules(const ModelConfig& c) {
  const int64_t h = c.hidden_size, inner = c.intermediate_size;
  std::vector<LinearModule> out;
  out.reserve(static_cast<size_t>(c.num_hidden_layers) * 6);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string layer = absl::StrCat("deberta.encoder.layer.", i, ".");
    out.push_back({layer + "attention.self.query_proj", h, h, true});
    out.push_back({layer + "attention.self.key_proj", h, h, true});
    out.push_back({layer + "attention.self.value_proj", h, h, true});
    out.push_back({layer + "attention.output.dense", h, h, true});
    out.push_back({layer + "intermediate.dense", h, inner, true});
    out.push_back({layer + "output.dense", inner, h, true});
  }
  return out;
}

}  // namespace peftd::model
