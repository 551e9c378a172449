// The encoder families' part of config.json (RoBERTa), kept apart from the decoder families of
// model_config.cc. Internal to common/: model_config.cc and model_modules.cc call these.
#ifndef PEFTD_COMMON_MODEL_CONFIG_ENCODERS_H_
#define PEFTD_COMMON_MODEL_CONFIG_ENCODERS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"
#include "nlohmann/json.hpp"

namespace peftd::model {

// RobertaForSequenceClassification, and the checkpoints a classifier is trained from (a new
// classifier head, as transformers' AutoModelForSequenceClassification): RobertaForMaskedLM
// (whose lm_head is ignored) and RobertaModel.
bool IsRobertaArchitecture(const std::string& architecture);

// RobertaConfig's fields into `c` (model_type "roberta", head_dim included). Options that change
// the math (position_embedding_type other than "absolute", is_decoder, add_cross_attention,
// problem_type other than single-label classification, an unsupported hidden_act) are refused
// naming the field.
absl::Status ParseRobertaConfig(const nlohmann::json& j, ModelConfig* c);
// After the common fields (pad_token_id, vocab_size) are read: positions count from
// pad_token_id + 1, so max_position_embeddings must reach past it.
absl::Status CheckRobertaPositions(const ModelConfig& c);

// Parameters of RobertaForSequenceClassification (embeddings, encoder, the classifier head when
// c.sequence_classification); the masked-LM head and pooler of other checkpoints are not counted.
int64_t RobertaNumParameters(const ModelConfig& c);

// config.json text of a RoBERTa config (RobertaConfig's names).
std::string RobertaConfigJson(const ModelConfig& c);

}  // namespace peftd::model

#endif  // PEFTD_COMMON_MODEL_CONFIG_ENCODERS_H_
