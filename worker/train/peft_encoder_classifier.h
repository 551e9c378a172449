// The trainer's model for an encoder classifier (RoBERTa, DeBERTa-v2/v3): the model with a PEFT
// method applied. Classification loss as PeftLlama's: the summed cross-entropy of the
// classifier's logits, which the model reads from the first token (<s> or [CLS]). The classifier
// head trains whole and is exported through PEFT's modules_to_save (`classifier.*`); anything
// else of the head (DeBERTa's pooler) stays frozen, as PEFT's SEQ_CLS default modules_to_save
// ["classifier", "score"] leaves it.
#ifndef PEFTD_WORKER_TRAIN_PEFT_ENCODER_CLASSIFIER_H_
#define PEFTD_WORKER_TRAIN_PEFT_ENCODER_CLASSIFIER_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "adapters/peft_files.h"
#include "adapters/peft_model.h"
#include "worker/train/peft_trainable.h"

namespace peftd::train {

// Model: a torch module holder (model::Roberta, model::DebertaV2) whose forward(ids, mask)
// returns the (batch, num_labels) logits and whose word_embeddings says the device.
template <typename Model>
class PeftEncoderClassifier : public PeftTrainable {
 public:
  PeftEncoderClassifier(Model model, std::unique_ptr<adapters::PeftModel> peft)
      : PeftTrainable(std::move(peft)), model_(std::move(model)) {}

  LossOutput Forward(const Batch& batch) override {
    namespace F = torch::nn::functional;
    const auto device = model_->word_embeddings->weight.device();
    torch::Tensor ids = batch.input_ids.to(device);
    torch::Tensor mask = batch.attention_mask.to(device);
    torch::Tensor labels = batch.labels.to(device);
    peft_->gate_context().token_mask = mask;
    peft_->gate_context().sequence_ids = torch::Tensor();
    torch::Tensor logits = model_->forward(ids, mask);
    LossOutput out;
    out.loss_sum =
        F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    out.correct = logits.argmax(-1).eq(labels).sum().template item<int64_t>();
    return out;
  }
  void SetTraining(bool training) override { model_->train(training); }
  absl::Status ExportAdapter(const std::string& dir) override {
    return adapters::SaveAdapter(*peft_, dir, ModulesToSave());
  }

  // The classifier's tensors under their model names, what the adapter file saves.
  std::map<std::string, torch::Tensor> ModulesToSave() {
    std::map<std::string, torch::Tensor> out;
    for (const auto& item : model_->named_parameters()) {
      if (absl::StartsWith(item.key(), "classifier.")) out[item.key()] = item.value();
    }
    return out;
  }
  Model& model() { return model_; }

 private:
  Model model_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PEFT_ENCODER_CLASSIFIER_H_
