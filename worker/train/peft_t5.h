// The trainer's model for T5 (SEQ_2_SEQ_LM): model::T5 with a PEFT method applied. The loss is
// the summed cross-entropy of the target tokens (labels != -100), the decoder reading the targets
// shifted right (HF's T5ForConditionalGeneration with labels), through the fused vocabulary
// projection when the head is frozen. The token gate sees the encoder's mask on encoder modules
// and on cross-attention's k and v, the decoder's real target positions (labels != -100) on
// decoder modules; the decoder itself attends causally, as HF's without decoder_attention_mask.
#ifndef PEFTD_WORKER_TRAIN_PEFT_T5_H_
#define PEFTD_WORKER_TRAIN_PEFT_T5_H_

#include <memory>
#include <string>

#include "adapters/peft_model.h"
#include "worker/model/t5.h"
#include "worker/train/peft_trainable.h"

namespace peftd::train {

class PeftT5 : public PeftTrainable {
 public:
  PeftT5(model::T5 model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  void SetTraining(bool training) override { model_->train(training); }
  absl::Status ExportAdapter(const std::string& dir) override;

  model::T5& model() { return model_; }

 private:
  model::T5 model_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_T5_H_
