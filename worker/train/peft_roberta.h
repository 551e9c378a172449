// The trainer's model for RoBERTa: model::Roberta (a classifier) with a PEFT method applied; the
// classifier (classifier.dense.*, classifier.out_proj.*) is saved through modules_to_save.
#ifndef PEFTD_WORKER_TRAIN_PEFT_ROBERTA_H_
#define PEFTD_WORKER_TRAIN_PEFT_ROBERTA_H_

#include "worker/model/roberta.h"
#include "worker/train/peft_encoder_classifier.h"

namespace peftd::train {

using PeftRoberta = PeftEncoderClassifier<model::Roberta>;

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_ROBERTA_H_
