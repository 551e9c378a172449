#include "worker/train/peft_trainable.h"

#include <map>
#include <string>

namespace peftd::train {
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

std::vector<TrainableTensor> PeftTrainable::Trainable() {
  std::vector<TrainableTensor> out;
  for (auto& [name, t] : peft_->TrainableTensors()) {
    const bool decay =
        name.find("bias") == std::string::npos && name.find("hut_beta") == std::string::npos;
    out.push_back({name, t, decay});
  }
  return out;
}

void PeftTrainable::FillStepMetrics(StepMetrics* m) {
  adapters::PeftModel& peft = *peft_;
  FillSparsity(peft.TakeGateSparsity(), &m->gate_sparsity, &m->gate_token_sparsity,
               &m->gate_sparsity_by_module, &m->gate_token_sparsity_by_module);
  m->gate_tau_by_module = peft.GateTaus();
  m->adalora_rank_by_module = peft.AdaLoraRanks();
  m->adadhp_active_modules = peft.AdaDhpActiveModules();
  for (const auto& [name, n] : peft.ModuleNorms()) {
    m->module_norms[name] = {n.relative, n.absolute, n.tokens};
  }
}

void PeftTrainable::EndEval(EvalMetrics* m) {
  FillSparsity(peft_->EvalGateSparsity(), &m->gate_sparsity, &m->gate_token_sparsity,
               &m->gate_sparsity_by_module, &m->gate_token_sparsity_by_module);
}

}  // namespace peftd::train
