#include "worker/train/peft_llama.h"

#include "adapters/peft_files.h"
#include "worker/model/lm_head_loss.h"

namespace peftd::train {

namespace F = torch::nn::functional;

PeftLlama::PeftLlama(model::Llama model, std::unique_ptr<adapters::PeftModel> peft)
    : PeftTrainable(std::move(peft)), model_(std::move(model)) {}

LossOutput PeftLlama::Forward(const Batch& batch) {
  const auto device = model_->model->embed_tokens->weight.device();
  torch::Tensor ids = batch.input_ids.to(device);
  torch::Tensor mask = batch.attention_mask.to(device);
  torch::Tensor labels = batch.labels.to(device);
  peft_->gate_context().token_mask = mask;
  peft_->gate_context().sequence_ids =
      batch.sequence_ids.defined() ? batch.sequence_ids.to(device) : torch::Tensor();
  LossOutput out;
  if (model_->config().sequence_classification) {
    torch::Tensor logits = model_->forward(ids, mask);
    out.loss_sum =
        F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    out.correct = logits.argmax(-1).eq(labels).sum().item<int64_t>();
    return out;
  }
  torch::Tensor hidden = model_->Hidden(
      ids, mask, batch.position_ids.defined() ? batch.position_ids.to(device) : torch::Tensor(),
      batch.sequence_ids.defined() ? batch.sequence_ids.to(device) : torch::Tensor());
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
  head_rows_ = h.size(0);
  // A frozen vocabulary projection without bias goes through the fused loss; an adapted
  // lm_head does not.
  const adapters::Linear& head = model_->lm_head;
  const bool adapted_head = head && head->adapter() && !head->merged();
  if (!adapted_head && !(head && head->bias.defined())) {
    const torch::Tensor& weight = head ? head->weight : model_->model->embed_tokens->weight;
    out.loss_sum = model::LmHeadCrossEntropySum(h, weight, targets);
    return out;
  }
  out.loss_sum = F::cross_entropy(model_->Head(h), targets,
                                  F::CrossEntropyFuncOptions().reduction(torch::kSum));
  return out;
}

absl::Status PeftLlama::ExportAdapter(const std::string& dir) {
  std::map<std::string, torch::Tensor> modules_to_save;
  if (!model_->score.is_empty()) modules_to_save["score.weight"] = model_->score->weight;
  return adapters::SaveAdapter(*peft_, dir, modules_to_save);
}

}  // namespace peftd::train
