#include "worker/train/peft_t5.h"

#include "adapters/peft_files.h"
#include "worker/model/lm_head_loss.h"

namespace peftd::train {

namespace F = torch::nn::functional;

PeftT5::PeftT5(model::T5 model, std::unique_ptr<adapters::PeftModel> peft)
    : PeftTrainable(std::move(peft)), model_(std::move(model)) {}

LossOutput PeftT5::Forward(const Batch& batch) {
  const auto device = model_->shared->weight.device();
  torch::Tensor ids = batch.input_ids.to(device);
  torch::Tensor mask = batch.attention_mask.to(device);
  torch::Tensor labels = batch.labels.to(device);
  adapters::GateContext* gate = &peft_->gate_context();
  gate->sequence_ids = torch::Tensor();  // seq2seq never packs
  torch::Tensor encoded = model_->Encode(ids, mask, gate);
  // The gate of decoder modules counts the positions that predict a real target token.
  torch::Tensor hidden = model_->Decode(model_->ShiftRight(labels), encoded, mask, gate,
                                        labels.ne(-100).to(torch::kLong));
  torch::Tensor h = hidden.reshape({-1, hidden.size(-1)});
  torch::Tensor targets = labels.reshape({-1});
  if (batch.num_targets != targets.size(0)) {
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
  out.loss_sum =
      model::LmHeadCrossEntropySum(h * model_->HeadScale(), model_->HeadWeight(), targets);
  return out;
}

absl::Status PeftT5::ExportAdapter(const std::string& dir) {
  return adapters::SaveAdapter(*peft_, dir, {});
}

}  // namespace peftd::train
