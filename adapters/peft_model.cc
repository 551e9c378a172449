#include "adapters/peft_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "adapters/module_patterns.h"
#include "common/status.h"

namespace peftd::adapters {

const char* MethodName(MethodKind kind) {
  switch (kind) {
    case MethodKind::kLora:
      return "lora";
    case MethodKind::kDora:
      return "dora";
    case MethodKind::kAdaLora:
      return "adalora";
    case MethodKind::kHut:
      return "hut";
    case MethodKind::kAdaDhp:
      return "adadhp";
  }
  return "?";
}

absl::StatusOr<MethodKind> ParseMethod(const std::string& name) {
  for (auto kind : {MethodKind::kLora, MethodKind::kDora, MethodKind::kAdaLora, MethodKind::kHut,
                    MethodKind::kAdaDhp}) {
    if (name == MethodName(kind)) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown method '", name, "'"));
}

namespace {

// rank_pattern / alpha_pattern values, and that only LoRA and DoRA carry them (AdaLoRA's
// rank_pattern is the keep masks of adalora_rank_pattern).
absl::Status ValidatePatterns(const AdapterConfig& c) {
  const bool lora = c.method == MethodKind::kLora || c.method == MethodKind::kDora;
  if (!lora && (!c.rank_pattern.empty() || !c.alpha_pattern.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        c.rank_pattern.empty() ? "alpha_pattern" : "rank_pattern",
        ": per-module ranks and alphas apply to LoRA and DoRA only, not ", MethodName(c.method)));
  }
  for (const auto& [key, r] : c.rank_pattern) {
    if (r < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank_pattern['", key, "']: r must be >= 1, got ", r));
    }
  }
  for (const auto& [key, alpha] : c.alpha_pattern) {
    if (!std::isfinite(alpha)) {
      return absl::InvalidArgumentError(
          absl::StrCat("alpha_pattern['", key, "']: lora_alpha must be a finite number"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Adapter* PeftModel::Unwrap(Adapter* adapter) {
  if (auto* gate = dynamic_cast<TokenGate*>(adapter)) return gate->inner().get();
  return adapter;
}

absl::StatusOr<std::unique_ptr<PeftModel>> PeftModel::Apply(torch::nn::Module* model,
                                                            AdapterConfig config,
                                                            int64_t total_steps) {
  std::unique_ptr<PeftModel> pm(new PeftModel());
  pm->model_ = model;
  std::shared_ptr<GateContext> ctx = pm->gate_context_;
  const AdapterConfig& c = config;
  RETURN_IF_ERROR(ValidatePatterns(c));
  std::vector<std::string> rank_keys, alpha_keys;
  for (const auto& [key, r] : c.rank_pattern) rank_keys.push_back(key);
  for (const auto& [key, alpha] : c.alpha_pattern) alpha_keys.push_back(key);
  ASSIGN_OR_RETURN(const PatternKeys rank_match, PatternKeys::Compile(rank_keys, "rank_pattern"));
  ASSIGN_OR_RETURN(const PatternKeys alpha_match,
                   PatternKeys::Compile(alpha_keys, "alpha_pattern"));
  // LoRA's and DoRA's options for one module: the global ones unless a pattern names it.
  auto lora_options = [&c, &rank_match, &alpha_match](const std::string& name) {
    LoraOptions o = c.lora;
    if (auto i = rank_match.Match(name)) o.r = c.rank_pattern[*i].second;
    if (auto i = alpha_match.Match(name)) o.alpha = c.alpha_pattern[*i].second;
    return o;
  };
  AdapterFactory factory = [&c, ctx, &lora_options](
                               const std::string& name,
                               LinearImpl& linear) -> std::shared_ptr<Adapter> {
    std::shared_ptr<Adapter> a;
    switch (c.method) {
      case MethodKind::kLora:
        a = std::make_shared<LoraAdapter>(linear, lora_options(name));
        break;
      case MethodKind::kDora:
        a = std::make_shared<DoraAdapter>(linear, lora_options(name));
        break;
      case MethodKind::kAdaLora:
        a = std::make_shared<AdaLoraAdapter>(linear, c.adalora);
        break;
      case MethodKind::kHut:
        a = std::make_shared<HutAdapter>(linear, c.hut);
        break;
      case MethodKind::kAdaDhp:
        a = std::make_shared<AdaDhpAdapter>(linear);
        break;
    }
    if (c.gate) a = std::make_shared<TokenGate>(a, *c.gate, ctx);
    return a;
  };
  ASSIGN_OR_RETURN(pm->names_, InjectAdapters(*model, config.targets, factory));
  pm->linears_ = AdaptedLinears(*model);
  const int64_t n = static_cast<int64_t>(pm->names_.size());
  if (config.method == MethodKind::kAdaLora) {
    config.adalora_schedule.init_r = config.adalora.init_r;
    config.adalora_schedule.total_step = total_steps;
    RETURN_IF_ERROR(ValidateSchedule(config.adalora_schedule));
  }
  if (config.method == MethodKind::kAdaDhp) {
    if (config.adadhp.target_num == 0) config.adadhp.target_num = (n + 1) / 2;
    if (config.adadhp.tfinal == 0)
      config.adadhp.tfinal = std::max<int64_t>(config.adadhp.tinit + 1, total_steps * 4 / 5);
    RETURN_IF_ERROR(ValidateSchedule(config.adadhp, n));
  }
  std::vector<std::pair<std::string, AdaLoraAdapter*>> adalora;
  std::vector<std::pair<std::string, AdaDhpAdapter*>> adadhp;
  pm->probe_context_->tokens = ctx;
  for (const auto& name : pm->names_) {
    LinearImpl* linear = pm->linears_.at(name);
    Adapter* a = linear->adapter().get();
    pm->probes_.emplace_back(name, std::make_shared<NormProbe>(Unwrap(a), pm->probe_context_));
    linear->set_norm_probe(pm->probes_.back().second);
    if (auto* gate = dynamic_cast<TokenGate*>(a)) pm->gates_.emplace_back(name, gate);
    Adapter* inner = Unwrap(a);
    if (auto* ada = dynamic_cast<AdaLoraAdapter*>(inner)) adalora.emplace_back(name, ada);
    if (auto* dhp = dynamic_cast<AdaDhpAdapter*>(inner)) adadhp.emplace_back(name, dhp);
  }
  if (!adalora.empty())
    pm->allocator_ = std::make_unique<RankAllocator>(config.adalora_schedule, adalora);
  if (!adadhp.empty()) pm->selector_ = std::make_unique<AdaDhpSelector>(config.adadhp, adadhp);
  pm->config_ = std::move(config);
  return pm;
}

std::vector<std::pair<std::string, torch::Tensor>> PeftModel::TrainableTensors() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : model_->named_parameters()) {
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  }
  return out;
}

torch::Tensor PeftModel::RegularizationLoss() const {
  if (!allocator_ || config_.adalora_schedule.orth_reg_weight == 0) return {};
  return allocator_->OrthogonalityPenalty();
}

void PeftModel::AfterOptimizerStep(int64_t step) {
  // PEFT's training loops call update_and_allocate(global_step) with global_step counted from 0.
  if (allocator_) allocator_->Step(step - 1);
  if (selector_) selector_->Step(step);
  for (auto& [name, gate] : gates_) gate->UpdateTau();
  if (step % NormProbeContext::kEverySteps == 0) ++probe_context_->arming;
}

std::map<std::string, TokenGate::Sparsity> PeftModel::TakeGateSparsity() {
  std::map<std::string, TokenGate::Sparsity> out;
  for (auto& [name, gate] : gates_) {
    const TokenGate::Sparsity s = gate->TakeTrainSparsity();
    if (s.per_token >= 0) out[name] = s;
  }
  return out;
}

std::map<std::string, double> PeftModel::GateTaus() const {
  std::map<std::string, double> out;
  for (const auto& [name, gate] : gates_) out[name] = gate->tau();
  return out;
}

void PeftModel::BeginEval() {
  for (auto& [name, gate] : gates_) gate->BeginEval();
}

std::map<std::string, TokenGate::Sparsity> PeftModel::EvalGateSparsity() const {
  std::map<std::string, TokenGate::Sparsity> out;
  for (const auto& [name, gate] : gates_) {
    const TokenGate::Sparsity s = gate->EvalSparsity();
    if (s.per_token >= 0) out[name] = s;
  }
  return out;
}

std::map<std::string, NormProbe::Means> PeftModel::ModuleNorms() const {
  std::map<std::string, NormProbe::Means> out;
  for (const auto& [name, probe] : probes_) {
    const NormProbe::Means m = probe->Read();
    if (m.tokens > 0) out[name] = m;
  }
  return out;
}

std::map<std::string, int64_t> PeftModel::AdaLoraRanks() const {
  return allocator_ ? allocator_->Ranks() : std::map<std::string, int64_t>{};
}

int64_t PeftModel::AdaDhpActiveModules() const {
  return selector_ ? selector_->ActiveModules() : -1;
}

std::vector<torch::Tensor> PeftModel::GateTauGradients() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, gate] : gates_) out.push_back(gate->tau_gradient_accumulator());
  return out;
}

std::vector<torch::Tensor> PeftModel::GateWindowCounters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, gate] : gates_) {
    for (auto& t : gate->TrainWindowCounters()) out.push_back(std::move(t));
  }
  return out;
}

uint64_t PeftModel::MaskChecksum() const {
  // FNV-1a over the module names, whether each is active and AdaLoRA's keep masks.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t byte) {
    h ^= byte;
    h *= 1099511628211ULL;
  };
  for (const auto& [name, linear] : linears_) {
    for (char c : name) mix(static_cast<unsigned char>(c));
    mix(linear->adapter() && linear->adapter()->IsActive() ? 1 : 2);
  }
  if (allocator_) {
    for (const auto& [name, keep] : allocator_->RankPattern()) {
      for (bool k : keep) mix(k ? 3 : 4);
    }
  }
  return h;
}

std::map<std::string, torch::Tensor> PeftModel::StateDict() const {
  std::map<std::string, torch::Tensor> out;
  if (allocator_) {
    for (auto& [k, v] : allocator_->StateDict()) out["adalora/" + k] = v;
  }
  if (selector_) {
    for (auto& [k, v] : selector_->StateDict()) out["adadhp/" + k] = v;
  }
  for (const auto& [name, gate] : gates_) {
    for (auto& [k, v] : gate->StateDict()) out["gate/" + name + "." + k] = v;
  }
  for (const auto& [name, probe] : probes_) out["norms/" + name] = probe->State();
  return out;
}

absl::Status PeftModel::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  auto with_prefix = [&](const std::string& prefix) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [k, v] : state) {
      if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
    }
    return out;
  };
  if (allocator_) RETURN_IF_ERROR(allocator_->LoadStateDict(with_prefix("adalora/")));
  if (selector_) RETURN_IF_ERROR(selector_->LoadStateDict(with_prefix("adadhp/")));
  for (auto& [name, gate] : gates_)
    RETURN_IF_ERROR(gate->LoadStateDict(with_prefix("gate/" + name + ".")));
  // Checkpoints written before the probes have no norms: the means then start afresh.
  for (auto& [name, probe] : probes_) {
    auto it = state.find("norms/" + name);
    if (it != state.end()) RETURN_IF_ERROR(probe->LoadState(it->second));
  }
  return absl::OkStatus();
}

}  // namespace peftd::adapters
