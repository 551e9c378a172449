// The Linear modules of the encoder families (RoBERTa), apart from the decoder families of
// model_modules.cc, which calls these. Internal to common/.
#ifndef PEFTD_COMMON_MODEL_MODULES_ENCODERS_H_
#define PEFTD_COMMON_MODEL_MODULES_ENCODERS_H_

#include <vector>

#include "common/model_modules.h"

namespace peftd::model {

// Per layer roberta.encoder.layer.N.attention.self.{query,key,value},
// attention.output.dense, intermediate.dense, output.dense, all with a bias. The classifier head
// (classifier.dense, classifier.out_proj) is no target: it trains whole, saved through PEFT's
// modules_to_save, as PEFT does for a SEQ_CLS model.
std::vector<LinearModule> RobertaLinearModules(const ModelConfig& c);

}  // namespace peftd::model

#endif  // PEFTD_COMMON_MODEL_MODULES_ENCODERS_H_
