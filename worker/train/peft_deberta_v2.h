// The trainer's model for DeBERTa-v2/v3: model::DebertaV2 (a classifier) with a PEFT method
// applied. Classification loss as PeftRoberta's: the summed cross-entropy of the classifier's
// logits, read through the ContextPooler from the first token ([CLS]). The classifier trains whole
// and is exported through PEFT's modules_to_save (classifier.*); the pooler stays frozen, as PEFT's
// SEQ_CLS default modules_to_save ["classifier", "score"] leaves it.
#ifndef PEFTD_WORKER_TRAIN_PEFT_DEBERTA_V2_H_
#define PEFTD_WORKER_TRAIN_PEFT_DEBERTA_V2_H_

#include <map>
#include <memory>
#include <string>

#include "adapters/peft_model.h"
#include "worker/model/deberta_v2.h"
#include "worker/train/peft_trainable.h"

namespace peftd::train {

class PeftDebertaV2 : public PeftTrainable {
 public:
  PeftDebertaV2(model::DebertaV2 model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  void SetTraining(bool training) override { model_->train(training); }
  absl::Status ExportAdapter(const std::string& dir) override;

  // The classifier's tensors under their model names, what the adapter file saves.
  std::map<std::string, torch::Tensor> ModulesToSave();
  model::DebertaV2& model() { return model_; }

 private:
  model::DebertaV2 model_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_DEBERTA_V2_H_
