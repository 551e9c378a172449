#include "common/model_config_encoders.h"

#include "absl/strings/str_cat.h"
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

}  // namespace

bool IsRobertaArchitecture(const std::string& a) {
  return a == "RobertaForSequenceClassification" || a == "RobertaForMaskedLM" ||
         a == "RobertaModel";
}

absl::Status ParseRobertaConfig(const json& j, ModelConfig* c) {
  c->model_type = "roberta";
  RETURN_IF_ERROR(ReadEncoderShape(j, c));
  RETURN_IF_ERROR(GetInt(j, "max_position_embeddings", &c->max_position_embeddings, true));
  c->type_vocab_size = 2;  // RobertaConfig's defaults (BertConfig's)
  RETURN_IF_ERROR(GetInt(j, "type_vocab_size", &c->type_vocab_size, false));
  c->layer_norm_epsilon = 1e-12;
  RETURN_IF_ERROR(GetValue(j, "layer_norm_eps", &c->layer_norm_epsilon));
  c->activation_function = "gelu";
  RETURN_IF_ERROR(GetValue(j, "hidden_act", &c->activation_function));
  if (c->activation_function == "gelu_pytorch_tanh") c->activation_function = "gelu_new";
  if (c->activation_function != "gelu" && c->activation_function != "gelu_new") {
    return Bad("hidden_act", absl::StrCat("'", c->activation_function,
                                          "' is not supported (supported: gelu, gelu_new, "
                                          "gelu_pytorch_tanh)"));
  }
  std::string text = "absolute";
  RETURN_IF_ERROR(GetValue(j, "position_embedding_type", &text));
  if (text != "absolute") {
    return Bad("position_embedding_type",
               absl::StrCat("'", text, "' is not supported (supported: absolute)"));
  }
  for (const char* key : {"is_decoder", "add_cross_attention"}) {
    bool flag = false;
    RETURN_IF_ERROR(GetValue(j, key, &flag));
    if (flag) return Bad(key, "true is not supported (an encoder classifier only)");
  }
  RETURN_IF_ERROR(CheckSingleLabel(j));
  c->pad_token_id = 1;  // RobertaConfig's default
  c->attention_bias = c->o_proj_bias = c->mlp_bias = true;
  if (c->hidden_size < 1 || c->num_attention_heads < 1) return absl::OkStatus();  // checked later
  RETURN_IF_ERROR(SetEncoderHeadDim(c));
  if (c->type_vocab_size < 1 || c->type_vocab_size > 1024) {
    return Bad("type_vocab_size", "must be in [1, 1024]");
  }
  if (c->layer_norm_epsilon <= 0) return Bad("layer_norm_eps", "must be > 0");
  return absl::OkStatus();
}

// After the common fields: positions count from pad_token_id + 1, so the table must reach past it.
absl::Status CheckRobertaPositions(const ModelConfig& c) {
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size) {
    return Bad("pad_token_id", absl::StrCat(c.pad_token_id, " is outside the vocabulary (",
                                            c.vocab_size, "): RoBERTa's padding_idx"));
  }
  if (c.max_position_embeddings < c.pad_token_id + 2 ||
      c.max_position_embeddings > (int64_t{1} << 20)) {
    return Bad("max_position_embeddings",
               absl::StrCat(c.max_position_embeddings,
                            " must be in [pad_token_id + 2, 2^20]: "
                            "RoBERTa's positions start at pad_token_id + 1"));
  }
  return absl::OkStatus();
}

int64_t RobertaNumParameters(const ModelConfig& c) {
  const int64_t h = c.hidden_size, inner = c.intermediate_size;
  const int64_t layer = 4 * (h * h + h)      // query, key, value, attention.output.dense
                        + h * inner + inner  // intermediate.dense
                        + inner * h + h      // output.dense
                        + 4 * h;             // two LayerNorms
  int64_t total = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h +
                  c.num_hidden_layers * layer;
  if (c.sequence_classification) total += h * h + h + h * c.num_labels + c.num_labels;
  return total;
}

std::string RobertaConfigJson(const ModelConfig& c) {
  json j = {{"architectures", {c.architecture}},
            {"model_type", "roberta"},
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
            {"position_embedding_type", "absolute"},
            {"torch_dtype", c.torch_dtype.empty() ? "float32" : c.torch_dtype},
            {"bos_token_id", c.bos_token_id},
            {"eos_token_id", c.eos_token_id},
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

}  // namespace peftd::model
