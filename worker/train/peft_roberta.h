// The trainer's model for RoBERTa: model::Roberta (a classifier) with a PEFT method applied.
// Classification loss as PeftLlama's: the summed cross-entropy of the classifier's logits, here
// read from the first token (<s>); the classifier head trains whole and is exported through
// PEFT's modules_to_save (classifier.dense.*, classifier.out_proj.*).
#ifndef PEFTD_WORKER_TRAIN_PEFT_ROBERTA_H_
#define PEFTD_WORKER_TRAIN_PEFT_ROBERTA_H_

#include <map>
#include <memory>
#include <string>

#include "adapters/peft_model.h"
#include "worker/model/roberta.h"
#include "worker/train/peft_trainable.h"

namespace peftd::train {

class PeftRoberta : public PeftTrainable {
 public:
  PeftRoberta(model::Roberta model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  void SetTraining(bool training) override { model_->train(training); }
  absl::Status ExportAdapter(const std::string& dir) override;

  // The classifier's tensors under their model names, what the adapter file saves.
  std::map<std::string, torch::Tensor> ModulesToSave();
  model::Roberta& model() { return model_; }

 private:
  model::Roberta model_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_ROBERTA_H_
