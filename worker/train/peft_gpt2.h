// The trainer's model for GPT-2: model::Gpt2 with a PEFT method applied. Causal-LM loss as
// PeftLlama's: the summed cross-entropy of the positions that carry a label, through the fused
// vocabulary projection (tied to wte) on those positions only.
#ifndef PEFTD_WORKER_TRAIN_PEFT_GPT2_H_
#define PEFTD_WORKER_TRAIN_PEFT_GPT2_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/peft_model.h"
#include "worker/model/gpt2.h"
#include "worker/train/peft_trainable.h"

namespace peftd::train {

class PeftGpt2 : public PeftTrainable {
 public:
  PeftGpt2(model::Gpt2 model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  void SetTraining(bool training) override { model_->train(training); }
  absl::Status ExportAdapter(const std::string& dir) override;

  model::Gpt2& model() { return model_; }

 private:
  model::Gpt2 model_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_GPT2_H_
