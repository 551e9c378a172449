// A model with a parameter-efficient method applied: which modules carry which adapter, the
// method's per-step machinery (AdaLoRA's rank allocator, AdaDHP's module selection, the token
// gates' τ), and everything that changes in training for checkpoints. What the trainer drives.
#ifndef PEFTD_ADAPTERS_PEFT_MODEL_H_
#define PEFTD_ADAPTERS_PEFT_MODEL_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/adadhp_selector.h"
#include "adapters/adalora.h"
#include "adapters/dora.h"
#include "adapters/hut.h"
#include "adapters/inject.h"
#include "adapters/norm_probe.h"
#include "adapters/rank_allocator.h"
#include "adapters/token_gate.h"

namespace peftd::adapters {

enum class MethodKind { kLora, kDora, kAdaLora, kHut, kAdaDhp };
const char* MethodName(MethodKind kind);  // "lora", "dora", ...
absl::StatusOr<MethodKind> ParseMethod(const std::string& name);

// Everything that defines an adapter (and goes into adapter_config.json).
struct AdapterConfig {
  MethodKind method = MethodKind::kLora;
  LoraOptions lora;  // LoRA and DoRA
  AdaLoraOptions adalora;
  AdaLoraSchedule adalora_schedule;
  HutOptions hut;
  AdaDhpSchedule
      adadhp;  // target_num 0 = half of the adapted modules; tfinal 0 = 80% of total_steps
  std::optional<GateOptions> gate;  // the token gate `_S`
  // LoRA and DoRA: PEFT's rank_pattern / alpha_pattern, per-module r and lora_alpha by key, in
  // the file's order (module_patterns.h says which key applies to a module).
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  // AdaLoRA: PEFT's rank_pattern of a saved adapter, module name -> the triplets kept.
  std::map<std::string, std::vector<bool>> adalora_rank_pattern;
  TargetSpec targets;
  std::string base_model_name_or_path;
  std::string task_type = "CAUSAL_LM";       // or "SEQ_CLS"
  std::vector<std::string> modules_to_save;  // e.g. "score"
  // PEFT's fan_in_fan_out: the base layers are Conv1D with weights stored (in, out) (GPT-2). The
  // adapter tensors keep the Linear layout either way (lora_A (r, in), lora_B (out, r)); PEFT
  // only transposes the delta it merges into such a weight, so this is written for PEFT's sake.
  bool fan_in_fan_out = false;
};

class PeftModel {
 public:
  // Attaches the adapters of `config` to `model` (not owned; must outlive this). `total_steps`
  // drives the AdaLoRA and AdaDHP schedules; errors name the field (bad schedule, no match, a
  // bad rank_pattern / alpha_pattern entry).
  static absl::StatusOr<std::unique_ptr<PeftModel>> Apply(torch::nn::Module* model,
                                                          AdapterConfig config,
                                                          int64_t total_steps);

  const AdapterConfig& config() const { return config_; }
  const std::vector<std::string>& module_names() const { return names_; }
  torch::nn::Module& model() { return *model_; }
  // The token mask of the next forward ((B, T), 1 = real token), read by every gate.
  GateContext& gate_context() { return *gate_context_; }

  // Adapter tensors that require grad, with their full names.
  std::vector<std::pair<std::string, torch::Tensor>> TrainableTensors();
  ParameterCount Count() { return CountParameters(*model_); }

  // AdaLoRA's orthogonality penalty; undefined for the other methods.
  torch::Tensor RegularizationLoss() const;
  // Once per optimizer step, after the AdamW step, before zero_grad, with the 1-based step (the
  // optimizer steps done). AdaLoRA's allocator gets PEFT's global_step = step − 1.
  void AfterOptimizerStep(int64_t step);

  // Per-module statistics for progress reports. Gate sparsity: both figures of each module that
  // counted a token in the window (TokenGate::Sparsity).
  std::map<std::string, TokenGate::Sparsity> TakeGateSparsity();  // training window
  std::map<std::string, double> GateTaus() const;
  void BeginEval();
  std::map<std::string, TokenGate::Sparsity> EvalGateSparsity() const;
  // Every adapted module's norm statistics so far (norm_probe.h): the paper's norm criteria.
  std::map<std::string, NormProbe::Means> ModuleNorms() const;
  // Triplets each module's keep mask keeps; empty unless AdaLoRA.
  std::map<std::string, int64_t> AdaLoraRanks() const;
  int64_t AdaDhpActiveModules() const;  // -1 unless AdaDHP

  // Data-parallel training: the gates' τ-gradient accumulators (summed over ranks before
  // AfterOptimizerStep) and training-window counters (summed before TakeGateSparsity), in module
  // order; and a checksum of every masking decision (AdaLoRA's keep masks, which modules are
  // active), equal on every rank that decided the same.
  std::vector<torch::Tensor> GateTauGradients() const;
  std::vector<torch::Tensor> GateWindowCounters() const;
  uint64_t MaskChecksum() const;

  // Allocator, selector, gate and norm probe states (not the trainable tensors).
  std::map<std::string, torch::Tensor> StateDict() const;
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

  // adapter name -> adapter, and the Linear it is attached to.
  const std::map<std::string, LinearImpl*>& linears() const { return linears_; }
  // The method's own adapter under the gate, when gated.
  static Adapter* Unwrap(Adapter* adapter);

 private:
  PeftModel() = default;
  torch::nn::Module* model_ = nullptr;
  AdapterConfig config_;
  std::vector<std::string> names_;
  std::map<std::string, LinearImpl*> linears_;
  std::shared_ptr<GateContext> gate_context_ = std::make_shared<GateContext>();
  std::vector<std::pair<std::string, TokenGate*>> gates_;
  std::shared_ptr<NormProbeContext> probe_context_ = std::make_shared<NormProbeContext>();
  std::vector<std::pair<std::string, std::shared_ptr<NormProbe>>> probes_;  // shared with Linears
  std::unique_ptr<RankAllocator> allocator_;
  std::unique_ptr<AdaDhpSelector> selector_;
};

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_PEFT_MODEL_H_
