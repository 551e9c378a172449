// DeBERTa-v2/v3's part of config.json (DebertaV2Config), apart from the other encoder (RoBERTa,
// model_config_encoders.cc). Internal to common/: model_config.cc and model_modules.cc call these.
#ifndef PEFTD_COMMON_MODEL_CONFIG_DEBERTA_H_
#define PEFTD_COMMON_MODEL_CONFIG_DEBERTA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/model_config.h"
#include "common/model_modules.h"
#include "nlohmann/json.hpp"

namespace peftd::model {

// DebertaV2ForSequenceClassification, and the checkpoints a classifier is trained from (a new
// pooler and classifier, as transformers' AutoModelForSequenceClassification): DebertaV2ForMaskedLM
// (whose lm_predictions / mask_predictions heads are ignored) and DebertaV2Model.
bool IsDebertaV2Architecture(const std::string& architecture);

// DebertaV2Config's fields into `c` (model_type "deberta-v2", head_dim included), with
// DebertaV2Config's defaults for the fields left out. What changes the math and is not
// implemented is refused naming the field: share_att_key false (separate pos_key_proj /
// pos_query_proj), pos_att_type other than a subset of {c2p, p2c}, conv_kernel_size > 0
// (ConvLayer), attention_head_size other than hidden_size / num_attention_heads, embedding_size
// other than hidden_size (embed_proj), pooler_hidden_size other than hidden_size, norm_rel_ebd
// other than "none" / "layer_norm", an unsupported hidden_act or pooler_hidden_act, problem_type
// other than single-label classification.
absl::Status ParseDebertaV2Config(const nlohmann::json& j, ModelConfig* c);
// After the common fields: pad_token_id (DebertaV2Config's default 0) inside the vocabulary.
absl::Status CheckDebertaV2PadToken(const ModelConfig& c);

// Rows of deberta.encoder.rel_embeddings: 2·position_buckets, or 2·max_relative_positions
// without buckets; 0 without relative_attention.
int64_t DebertaV2RelEmbeddingRows(const ModelConfig& c);

// Parameters of DebertaV2ForSequenceClassification (embeddings, encoder with its relative
// embeddings and their LayerNorm, pooler and classifier when c.sequence_classification).
int64_t DebertaV2NumParameters(const ModelConfig& c);

// config.json text of a DeBERTa-v2 config (DebertaV2Config's names).
std::string DebertaV2ConfigJson(const ModelConfig& c);

// Per layer deberta.encoder.layer.N.attention.self.{query_proj,key_proj,value_proj},
// attention.output.dense, intermediate.dense, output.dense, all with a bias. The head
// (pooler.dense, classifier) is no target.
std::vector<LinearModule> DebertaV2LinearModules(const ModelConfig& c);

}  // namespace peftd::model

#endif  // PEFTD_COMMON_MODEL_CONFIG_DEBERTA_H_
