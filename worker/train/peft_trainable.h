// What every model family's trainable shares once a PEFT method is applied: the adapter's
// trainable tensors (no weight decay on biases nor HUT's β, as HF Trainer), the method's hooks
// around a step, its per-step and evaluation statistics (gate sparsity and τ, AdaLoRA ranks,
// AdaDHP's active modules, the module norms of adapters/norm_probe.h), its checkpointed state and
// what data parallelism reduces. A family (PeftLlama, PeftGpt2) adds its model, Forward and export.
#ifndef PEFTD_WORKER_TRAIN_PEFT_TRAINABLE_H_
#define PEFTD_WORKER_TRAIN_PEFT_TRAINABLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/peft_model.h"
#include "worker/train/trainer.h"

namespace peftd::train {

class PeftTrainable : public TrainableModel {
 public:
  std::vector<TrainableTensor> Trainable() override;
  torch::Tensor RegularizationLoss() override { return peft_->RegularizationLoss(); }
  void AfterOptimizerStep(int64_t step) override { peft_->AfterOptimizerStep(step); }
  void FillStepMetrics(StepMetrics* metrics) override;
  void BeginEval() override { peft_->BeginEval(); }
  void EndEval(EvalMetrics* metrics) override;
  std::map<std::string, torch::Tensor> ExtraState() override { return peft_->StateDict(); }
  absl::Status LoadExtraState(const std::map<std::string, torch::Tensor>& state) override {
    return peft_->LoadStateDict(state);
  }
  std::vector<torch::Tensor> StepAccumulators() override { return peft_->GateTauGradients(); }
  std::vector<torch::Tensor> WindowCounters() override { return peft_->GateWindowCounters(); }
  uint64_t DecisionChecksum() override { return peft_->MaskChecksum(); }

  adapters::PeftModel& peft() { return *peft_; }

 protected:
  explicit PeftTrainable(std::unique_ptr<adapters::PeftModel> peft) : peft_(std::move(peft)) {}

  std::unique_ptr<adapters::PeftModel> peft_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_TRAINABLE_H_
