// What a training run tells the outside world: per-step metrics, phase changes, evaluations,
// checkpoints and log lines. The standalone `train` command prints them; the lease loop forwards
// them to the server in heartbeats. Calls come from the training thread, in order.
#ifndef PEFTD_WORKER_TRAIN_PROGRESS_H_
#define PEFTD_WORKER_TRAIN_PROGRESS_H_

#include <cstdint>
#include <map>
#include <string>

namespace peftd::train {

enum class Phase { kLoadingModel, kTraining, kEvaluating, kCheckpointing, kExporting };
const char* PhaseName(Phase phase);

enum class LogLevel { kDebug, kInfo, kWarning, kError };

// Numbers of one optimizer step (or the window since the last report).
struct StepMetrics {
  int64_t step = 0;  // optimizer steps done, 1-based after the first
  int64_t total_steps = 0;
  double epoch = 0;         // fractional epochs done
  int64_t tokens_seen = 0;  // non-padding training tokens so far
  double loss = 0;          // mean token loss of this step (without the orthogonality penalty)
  double learning_rate = 0;
  double grad_norm = 0;  // before clipping
  double tokens_per_second = 0;
  double step_seconds = 0;
  double eta_seconds = 0;
  // Token gate, mean over gated modules of each module's sparsity in this window: the paper's
  // per-sequence figure (TS-PEFT eq. 23), and the token-weighted one (TokenGate::Sparsity).
  double gate_sparsity = 0;
  double gate_token_sparsity = 0;
  std::map<std::string, double> gate_sparsity_by_module;
  std::map<std::string, double> gate_token_sparsity_by_module;
  std::map<std::string, double> gate_tau_by_module;
  std::map<std::string, int64_t> adalora_rank_by_module;
  int64_t adadhp_active_modules = -1;  // -1 when not AdaDHP
  // Every adapted module's output norms so far, for the paper's norm criteria
  // (adapters/norm_probe.h); cumulative over the job, not over the window.
  struct ModuleNorms {
    double relative = 0;  // mean ‖M(x)‖/‖W0 x‖ per token
    double absolute = 0;  // mean ‖M(x)‖ per token
    int64_t tokens = 0;
  };
  std::map<std::string, ModuleNorms> module_norms;
};

struct EvalMetrics {
  int64_t step = 0;
  double loss = 0;
  double accuracy = -1;  // SEQ_CLS only, else -1
  // Mean over gated modules on the validation set, per sequence and token-weighted as above.
  double gate_sparsity = 0;
  double gate_token_sparsity = 0;
  std::map<std::string, double> gate_sparsity_by_module;
  std::map<std::string, double> gate_token_sparsity_by_module;
};

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void OnPhase(Phase phase) {}
  virtual void OnStep(const StepMetrics& metrics) {}
  virtual void OnEval(const EvalMetrics& metrics) {}
  // A checkpoint of `step` is complete in `dir`.
  virtual void OnCheckpoint(int64_t step, const std::string& dir) {}
  virtual void OnLog(LogLevel level, const std::string& message) {}
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_PROGRESS_H_
