#include "common/model_modules.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/model_config_deberta.h"
#include "common/model_config_encoders.h"
#include "common/model_modules_encoders.h"

namespace peftd::model {

namespace {

std::vector<LinearModule> Gpt2LinearModules(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  std::vector<LinearModule> out;
  out.reserve(static_cast<size_t>(c.num_hidden_layers) * 4 + 1);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string block = absl::StrCat("transformer.h.", i, ".");
    out.push_back({block + "attn.c_attn", h, 3 * h, true});
    out.push_back({block + "attn.c_proj", h, h, true});
    out.push_back({block + "mlp.c_fc", h, c.intermediate_size, true});
    out.push_back({block + "mlp.c_proj", c.intermediate_size, h, true});
  }
  if (!c.tie_word_embeddings) out.push_back({"lm_head", h, c.vocab_size, false});
  return out;
}

// T5: the encoder's blocks, then the decoder's, in HF's module order; no bias anywhere.
std::vector<LinearModule> T5LinearModules(const ModelConfig& c) {
  const int64_t d = c.hidden_size, inner = c.num_attention_heads * c.head_dim;
  std::vector<LinearModule> out;
  auto attention = [&](const std::string& prefix) {
    for (const char* p : {"q", "k", "v"}) out.push_back({prefix + p, d, inner, false});
    out.push_back({prefix + "o", inner, d, false});
  };
  auto feed_forward = [&](const std::string& prefix) {
    if (c.gated_feed_forward) {
      out.push_back({prefix + "wi_0", d, c.intermediate_size, false});
      out.push_back({prefix + "wi_1", d, c.intermediate_size, false});
    } else {
      out.push_back({prefix + "wi", d, c.intermediate_size, false});
    }
    out.push_back({prefix + "wo", c.intermediate_size, d, false});
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string block = absl::StrCat("encoder.block.", i, ".");
    attention(block + "layer.0.SelfAttention.");
    feed_forward(block + "layer.1.DenseReluDense.");
  }
  for (int64_t i = 0; i < c.num_decoder_layers; ++i) {
    const std::string block = absl::StrCat("decoder.block.", i, ".");
    attention(block + "layer.0.SelfAttention.");
    attention(block + "layer.1.EncDecAttention.");
    feed_forward(block + "layer.2.DenseReluDense.");
  }
  if (!c.tie_word_embeddings) out.push_back({"lm_head", d, c.vocab_size, false});
  return out;
}

}  // namespace

std::vector<std::string> DefaultTargetModules(const ModelConfig& c) {
  if (c.IsGpt2()) return {"c_attn"};
  if (c.IsRoberta()) return {"query", "value"};
  if (c.IsDebertaV2()) return {"query_proj", "value_proj"};  // PEFT's mapping for deberta-v2
  if (c.IsT5()) return {"q", "v"};
  return {"q_proj", "v_proj"};
}

std::vector<std::string> SupportedTaskTypes(const std::string& architecture) {
  if (architecture == "GPT2LMHeadModel") return {"CAUSAL_LM"};
  // An encoder checkpoint trains as a classifier only (a masked-LM head is not trained).
  if (IsRobertaArchitecture(architecture) || IsDebertaV2Architecture(architecture)) {
    return {"SEQ_CLS"};
  }
  if (architecture == "T5ForConditionalGeneration") return {"SEQ_2_SEQ_LM"};
  if (absl::EndsWith(architecture, "ForSequenceClassification")) return {"SEQ_CLS"};
  // A causal-LM checkpoint also trains as a classifier (a new score head, as HF's
  // AutoModelForSequenceClassification).
  if (absl::EndsWith(architecture, "ForCausalLM")) return {"CAUSAL_LM", "SEQ_CLS"};
  return {};
}

std::vector<LinearModule> LinearModules(const ModelConfig& c) {
  if (c.IsGpt2()) return Gpt2LinearModules(c);
  if (c.IsRoberta()) return RobertaLinearModules(c);
  if (c.IsDebertaV2()) return DebertaV2LinearModules(c);
  if (c.IsT5()) return T5LinearModules(c);
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  std::vector<LinearModule> out;
  out.reserve(static_cast<size_t>(c.num_hidden_layers) * 7 + 1);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string attn = absl::StrCat("model.layers.", i, ".self_attn.");
    const std::string mlp = absl::StrCat("model.layers.", i, ".mlp.");
    out.push_back({attn + "q_proj", c.hidden_size, q, c.attention_bias});
    out.push_back({attn + "k_proj", c.hidden_size, kv, c.attention_bias});
    out.push_back({attn + "v_proj", c.hidden_size, kv, c.attention_bias});
    out.push_back({attn + "o_proj", q, c.hidden_size, false});
    out.push_back({mlp + "gate_proj", c.hidden_size, c.intermediate_size, false});
    out.push_back({mlp + "up_proj", c.hidden_size, c.intermediate_size, false});
    out.push_back({mlp + "down_proj", c.intermediate_size, c.hidden_size, false});
  }
  if (c.sequence_classification) {
    out.push_back({"score", c.hidden_size, c.num_labels, false});
  } else if (!c.tie_word_embeddings) {
    out.push_back({"lm_head", c.hidden_size, c.vocab_size, false});
  }
  return out;
}

ModelConfig ConfigForNumLabels(ModelConfig c, int64_t num_labels) {
  if (num_labels <= 0) return c;
  c.sequence_classification = true;
  c.num_labels = num_labels;
  if (c.id2label.size() != static_cast<size_t>(num_labels)) c.id2label.clear();
  const size_t pos = c.architecture.find("ForCausalLM");
  if (pos != std::string::npos) c.architecture.replace(pos, 11, "ForSequenceClassification");
  if (c.IsRoberta()) c.architecture = "RobertaForSequenceClassification";
  if (c.IsDebertaV2()) c.architecture = "DebertaV2ForSequenceClassification";
  return c;
}

}  // namespace peftd::model
