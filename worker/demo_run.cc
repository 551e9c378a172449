#include "worker/demo_run.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "absl/strings/str_format.h"
#include "adapters/peft_files.h"
#include "common/status.h"
#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
using adapters::MethodKind;

// A task the random tiny model cannot do and an adapter can learn: next = (3·prev + 7) mod 50 + 10.
std::vector<train::Example> Sequences(int n, int len, int seed) {
  std::vector<train::Example> out;
  for (int i = 0; i < n; ++i) {
    train::Example e;
    int64_t x = 10 + (seed * 31 + i * 17) % 50;
    for (int j = 0; j < len; ++j) {
      e.input_ids.push_back(x);
      x = (3 * x + 7) % 50 + 10;
    }
    out.push_back(e);
  }
  return out;
}

class LastStep : public train::ProgressSink {
 public:
  void OnStep(const train::StepMetrics& m) override {
    tokens_per_second = m.tokens_per_second;
    // Redrawn in place on a terminal; in a pipe or a log only the last step, on a line of its own.
    if (!tty_ && m.step != m.total_steps) return;
    std::cerr << absl::StrFormat("%s  step %3d/%d  loss %.4f  tok/s %8.0f", tty_ ? "\r" : "",
                                 m.step, m.total_steps, m.loss, m.tokens_per_second)
              << (tty_ ? "" : "\n") << std::flush;
  }
  double tokens_per_second = 0;

 private:
  const bool tty_ = isatty(STDERR_FILENO) != 0;
};

}  // namespace

absl::StatusOr<std::vector<DemoRow>> RunDemo(const std::string& work_dir, int64_t steps,
                                             int threads) {
  const std::string model_dir = (fs::path(work_dir) / "models" / "tiny-llama").string();
  RETURN_IF_ERROR(model::WriteTinyModel(model_dir));
  torch::set_num_threads(threads);
  std::vector<DemoRow> rows;
  const std::pair<MethodKind, double> methods[] = {{MethodKind::kLora, 1e-2},
                                                   {MethodKind::kDora, 1e-2},
                                                   {MethodKind::kAdaLora, 5e-2},
                                                   {MethodKind::kHut, 1e-1},
                                                   {MethodKind::kAdaDhp, 1e-1}};
  for (const auto& [kind, lr] : methods) {
    for (bool gated : {false, true}) {
      DemoRow row;
      row.variant = std::string(adapters::MethodName(kind)) + (gated ? "_S" : "");
      torch::manual_seed(7);
      ASSIGN_OR_RETURN(model::Llama llama, model::LoadLlama(model_dir));
      adapters::AdapterConfig c;
      c.method = kind;
      c.lora = {.r = 4, .alpha = 8};
      c.adalora = {.init_r = 6, .alpha = 12};
      c.adalora_schedule = {.target_r = 3, .tinit = steps / 10, .tfinal = steps / 10, .delta_t = 2};
      c.hut = {.r = 4};
      if (gated) c.gate = adapters::GateOptions{.s = 2e-2, .lambda = 2e-3};
      c.targets.target_modules = {"q_proj", "v_proj", "o_proj", "down_proj"};
      c.base_model_name_or_path = model_dir;
      ASSIGN_OR_RETURN(auto peft, adapters::PeftModel::Apply(llama.get(), c, steps));
      const auto count = peft->Count();
      row.trainable_parameters = count.trainable;
      row.trainable_percent = count.trainable_percent();
      train::PeftLlama model(llama, std::move(peft));
      train::MemoryBatchSource source(Sequences(64, 24, 1), 8, model::TinyConfig().pad_token_id, 3);
      train::MemoryEvalSource eval(Sequences(16, 24, 2), 8, model::TinyConfig().pad_token_id);
      train::TrainerOptions o;
      o.total_steps = steps;
      o.gradient_accumulation_steps = 2;
      o.lr = {.peak_lr = lr, .warmup_steps = 2, .total_steps = steps};
      LastStep sink;
      std::atomic<bool> cancelled{false};
      std::cerr << row.variant << "\n";
      train::Trainer trainer(o, &model, &source, &eval, &sink, &cancelled);
      ASSIGN_OR_RETURN(train::EvalMetrics before, trainer.Evaluate(0));
      ASSIGN_OR_RETURN(train::TrainResult result, trainer.Run(std::nullopt));
      if (isatty(STDERR_FILENO)) std::cerr << "\n";
      row.initial_eval_loss = before.loss;
      row.final_eval_loss = result.final_eval_loss.value_or(0);
      if (gated) row.gate_sparsity = result.final_gate_sparsity;
      row.tokens_per_second = sink.tokens_per_second;
      row.adapter_dir = (fs::path(work_dir) / "adapters" / row.variant).string();
      RETURN_IF_ERROR(adapters::SaveAdapter(model.peft(), row.adapter_dir));
      rows.push_back(row);
    }
  }
  return rows;
}

}  // namespace peftd::worker
