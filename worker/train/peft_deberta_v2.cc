#include "worker/train/peft_deberta_v2.h"

#include "absl/strings/match.h"
#include "adapters/peft_files.h"

namespace peftd::train {

namespace F = torch::nn::functional;

PeftDebertaV2::PeftDebertaV2(model::DebertaV2 model, std::unique_ptr<adapters::PeftModel> peft)
    : PeftTrainable(std::move(peft)), model_(std::move(model)) {}

LossOutput PeftDebertaV2::Forward(const Batch& batch) {
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
  out.correct = logits.argmax(-1).eq(labels).sum().item<int64_t>();
  return out;
}

std::map<std::string, torch::Tensor> PeftDebertaV2::ModulesToSave() {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model_->named_parameters()) {
    if (absl::StartsWith(item.key(), "classifier.")) out[item.key()] = item.value();
  }
  return out;
}

absl::Status PeftDebertaV2::ExportAdapter(const std::string& dir) {
  return adapters::SaveAdapter(*peft_, dir, ModulesToSave());
}

}  // namespace peftd::train
