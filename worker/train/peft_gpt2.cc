#include "worker/train/peft_gpt2.h"

#include "adapters/peft_files.h"
#include "worker/model/lm_head_loss.h"

namespace peftd::train {

namespace F = torch::nn::functional;

PeftGpt2::PeftGpt2(model::Gpt2 model, std::unique_ptr<adapters::PeftModel> peft)
    : PeftTrainable(std::move(peft)), model_(std::move(model)) {}

LossOutput PeftGpt2::Forward(const Batch& batch) {
  const auto device = model_->transformer->wte->weight.device();
  torch::Tensor ids = batch.input_ids.to(device);
  torch::Tensor mask = batch.attention_mask.to(device);
  torch::Tensor labels = batch.labels.to(device);
  torch::Tensor sequence_ids =
      batch.sequence_ids.defined() ? batch.sequence_ids.to(device) : torch::Tensor();
  peft_->gate_context().token_mask = mask;
  peft_->gate_context().sequence_ids = sequence_ids;
  torch::Tensor hidden = model_->Hidden(
      ids, mask, batch.position_ids.defined() ? batch.position_ids.to(device) : torch::Tensor(),
      sequence_ids);
  const int64_t b = ids.size(0), t = ids.size(1);
  // Position j predicts labels[j + 1]; project only the positions that carry a label.
  torch::Tensor targets = labels.narrow(1, 1, t - 1);
  torch::Tensor h = hidden.narrow(1, 0, t - 1);
  if (batch.num_targets == b * (t - 1)) {
    h = h.reshape({-1, h.size(-1)});
    targets = targets.reshape({-1});
  } else {
    torch::Tensor selected = targets.ne(-100);
    h = h.index({selected});
    targets = targets.index({selected});
  }
  LossOutput out;
  const adapters::Linear& head = model_->lm_head;
  if (head && head->adapter() && !head->merged()) {
    out.loss_sum = F::cross_entropy(model_->Head(h), targets,
                                    F::CrossEntropyFuncOptions().reduction(torch::kSum));
    return out;
  }
  out.loss_sum = model::LmHeadCrossEntropySum(h, model_->HeadWeight(), targets);
  return out;
}

absl::Status PeftGpt2::ExportAdapter(const std::string& dir) {
  return adapters::SaveAdapter(*peft_, dir, {});
}

}  // namespace peftd::train
