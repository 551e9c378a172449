// The trainer's model for DeBERTa-v2/v3: model::DebertaV2 (a classifier, read through the
// ContextPooler from [CLS]) with a PEFT method applied; the classifier (classifier.*) is saved
// through modules_to_save, the pooler stays frozen as PEFT leaves it.
#ifndef PEFTD_WORKER_TRAIN_PEFT_DEBERTA_V2_H_
#define PEFTD_WORKER_TRAIN_PEFT_DEBERTA_V2_H_

#include "worker/model/deberta_v2.h"
#include "worker/train/peft_encoder_classifier.h"

namespace peftd::train {

using PeftDebertaV2 = PeftEncoderClassifier<model::DebertaV2>;

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_DEBERTA_V2_H_
