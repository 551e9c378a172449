#include "worker/train/peft_llama.h"

#include "adapters/peft_files.h"
#include "worker/model/lm_head_loss.h"

namespace peftd::train {

namespace F = torch::nn::functional;

PeftLlama::PeftLlama(model::Llama model, std::unique_ptr<adapters::PeftModel> peft)
    : model_(std::move(model)), peft_(std::move(peft)) {}

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

std::vector<TrainableTensor> PeftLlama::Trainable() {
  std::vector<TrainableTensor> out;
  for (auto& [name, t] : peft_->TrainableTensors()) {
    // As HF Trainer: no weight decay on biases (and HUT's β, a bias).
    const bool decay =
        name.find("bias") == std::string::npos && name.find("hut_beta") == std::string::npos;
    out.push_back({name, t, decay});
  }
  return out;
}

namespace {

// Splits each module's two sparsity figures into the two maps and their means over modules.
void FillSparsity(const std::map<std::string, adapters::TokenGate::Sparsity>& by_module,
                  double* per_sequence, double* per_token,
                  std::map<std::string, double>* per_sequence_by_module,
                  std::map<std::string, double>* per_token_by_module) {
  double sum_sequence = 0, sum_token = 0;
  for (const auto& [name, s] : by_module) {
    (*per_sequence_by_module)[name] = s.per_sequence;
    (*per_token_by_module)[name] = s.per_token;
    sum_sequence += s.per_sequence;
    sum_token += s.per_token;
  }
  const double n = static_cast<double>(by_module.size());
  *per_sequence = by_module.empty() ? 0 : sum_sequence / n;
  *per_token = by_module.empty() ? 0 : sum_token / n;
}

}  // namespace

void PeftLlama::FillStepMetrics(StepMetrics* m) {
  FillSparsity(peft_->TakeGateSparsity(), &m->gate_sparsity, &m->gate_token_sparsity,
               &m->gate_sparsity_by_module, &m->gate_token_sparsity_by_module);
  m->gate_tau_by_module = peft_->GateTaus();
  m->adalora_rank_by_module = peft_->AdaLoraRanks();
  m->adadhp_active_modules = peft_->AdaDhpActiveModules();
  for (const auto& [name, n] : peft_->ModuleNorms())
    m->module_norms[name] = {n.relative, n.absolute, n.tokens};
}

void PeftLlama::EndEval(EvalMetrics* m) {
  FillSparsity(peft_->EvalGateSparsity(), &m->gate_sparsity, &m->gate_token_sparsity,
               &m->gate_sparsity_by_module, &m->gate_token_sparsity_by_module);
}

absl::Status PeftLlama::ExportAdapter(const std::string& dir) {
  std::map<std::string, torch::Tensor> modules_to_save;
  if (!model_->score.is_empty()) modules_to_save["score.weight"] = model_->score->weight;
  return adapters::SaveAdapter(*peft_, dir, modules_to_save);
}

}  // namespace peftd::train
