// The trainer's model: a LLaMA-family model with a PEFT method applied. Causal-LM loss is the
// summed cross-entropy of the positions that carry a label, computed on those positions only
// (the vocabulary projection skips padding and prompt tokens); classification loss is the summed
// cross-entropy of the score head on the last real token.
#ifndef PEFTD_WORKER_TRAIN_PEFT_LLAMA_H_
#define PEFTD_WORKER_TRAIN_PEFT_LLAMA_H_

#include <memory>

#include "adapters/peft_model.h"
#include "worker/model/llama.h"
#include "worker/train/peft_trainable.h"

namespace peftd::train {

class PeftLlama : public PeftTrainable {
 public:
  PeftLlama(model::Llama model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  void SetTraining(bool training) override { model_->train(training); }
  // The PEFT folder (adapters::SaveAdapter), with the score head of a classifier.
  absl::Status ExportAdapter(const std::string& dir) override;

  model::Llama& model() { return model_; }
  // Rows the vocabulary projection got in the last causal-LM Forward: the positions that carry a
  // label (not the prompt, not padding).
  int64_t head_rows() const { return head_rows_; }

 private:
  model::Llama model_;
  int64_t head_rows_ = 0;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_LLAMA_H_
