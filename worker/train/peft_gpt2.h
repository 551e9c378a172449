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
#include "worker/train/trainer.h"

namespace peftd::train {

class PeftGpt2 : public TrainableModel {
 public:
  PeftGpt2(model::Gpt2 model, std::unique_ptr<adapters::PeftModel> peft);

  LossOutput Forward(const Batch& batch) override;
  std::vector<TrainableTensor> Trainable() override;
  void SetTraining(bool training) override { model_->train(training); }
  torch::Tensor RegularizationLoss() override { return peft_->RegularizationLoss(); }
  void AfterOptimizerStep(int64_t step) override { peft_->AfterOptimizerStep(step); }
  void FillStepMetrics(StepMetrics* metrics) override;
  void BeginEval() override { peft_->BeginEval(); }
  void EndEval(EvalMetrics* metrics) override;
  absl::Status ExportAdapter(const std::string& dir) override;
  std::map<std::string, torch::Tensor> ExtraState() override { return peft_->StateDict(); }
  absl::Status LoadExtraState(const std::map<std::string, torch::Tensor>& state) override {
    return peft_->LoadStateDict(state);
  }
  std::vector<torch::Tensor> StepAccumulators() override { return peft_->GateTauGradients(); }
  std::vector<torch::Tensor> WindowCounters() override { return peft_->GateWindowCounters(); }
  uint64_t DecisionChecksum() override { return peft_->MaskChecksum(); }

  model::Gpt2& model() { return model_; }
  adapters::PeftModel& peft() { return *peft_; }

 private:
  model::Gpt2 model_;
  std::unique_ptr<adapters::PeftModel> peft_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_GPT2_H_
