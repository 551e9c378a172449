// The trainer's model: a LLaMA-family model with a PEFT method applied. Causal-LM loss is the
// summed cross-entropy of the positions that carry a label, computed on those positions only
// (the vocabulary projection skips padding and prompt tokens); classification loss is the summed
// cross-entropy of the score head on the last real token.
#ifndef PEFTD_WORKER_TRAIN_PEFT_LLAMA_H_
#define PEFTD_WORKER_TRAIN_PEFT_LLAMA_H_

#include <memory>

#include "adapters/peft_model.h"
#include "worker/model/llama.h"
#include "worker/train/trainer.h"

namespace peftd::train {

class PeftLlama : public TrainableModel {
 public:
  PeftLlama(model::Llama model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  std::vector<TrainableTensor> Trainable() override;
  void SetTraining(bool training) override { model_->train(training); }
  torch::Tensor RegularizationLoss() override { return peft_->RegularizationLoss(); }
  void AfterOptimizerStep(int64_t step) override { peft_->AfterOptimizerStep(step); }
  void FillStepMetrics(StepMetrics* metrics) override;
  void BeginEval() override { peft_->BeginEval(); }
  void EndEval(EvalMetrics* metrics) override;
  // The PEFT folder (adapters::SaveAdapter), with the score head of a classifier.
  absl::Status ExportAdapter(const std::string& dir) override;
  std::map<std::string, torch::Tensor> ExtraState() override { return peft_->StateDict(); }
  absl::Status LoadExtraState(const std::map<std::string, torch::Tensor>& state) override {
    return peft_->LoadStateDict(state);
  }
  std::vector<torch::Tensor> StepAccumulators() override { return peft_->GateTauGradients(); }
  std::vector<torch::Tensor> WindowCounters() override { return peft_->GateWindowCounters(); }
  uint64_t DecisionChecksum() override { return peft_->MaskChecksum(); }

  model::Llama& model() { return model_; }
  adapters::PeftModel& peft() { return *peft_; }
  // Rows the vocabulary projection got in the last causal-LM Forward: the positions that carry a
  // label (not the prompt, not padding).
  int64_t head_rows() const { return head_rows_; }

 private:
  model::Llama model_;
  std::unique_ptr<adapters::PeftModel> peft_;
  int64_t head_rows_ = 0;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_LLAMA_H_
