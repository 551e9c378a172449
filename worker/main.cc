// peftd-worker: the training process. Subcommands:
//   make-tiny-model DIR [--shards N] [--bf16]   write the deterministic tiny LLaMA-shaped HF folder
//   demo [--dir DIR] [--steps N] [--json]       train the tiny model with every method and gate
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <iostream>
#include <thread>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "worker/demo_run.h"
#include "worker/model/tiny_model.h"

int main(int argc, char** argv) {
  CLI::App app{"peftd-worker: trains parameter-efficient adapters with LibTorch"};
  app.require_subcommand(1);

  std::string tiny_dir;
  int shards = 1;
  bool bf16 = false;
  auto* tiny = app.add_subcommand("make-tiny-model", "write the deterministic tiny LLaMA-shaped HF model folder");
  tiny->add_option("dir", tiny_dir, "output folder")->required();
  tiny->add_option("--shards", shards, "number of safetensors shards (1 = model.safetensors)")->check(CLI::Range(1, 64));
  tiny->add_flag("--bf16", bf16, "store the weights as BF16");

  std::string demo_dir = "./peftd-demo";
  int64_t steps = 60;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  bool json_out = false;
  auto* demo = app.add_subcommand("demo", "train the tiny model with every method, with and without the token gate");
  demo->add_option("--dir", demo_dir, "working folder (model, adapters)");
  demo->add_option("--steps", steps, "optimizer steps per run")->check(CLI::Range(2, 100000));
  demo->add_option("--threads", threads, "CPU threads")->check(CLI::Range(1, 1024));
  demo->add_flag("--json", json_out, "print JSON instead of a table");

  CLI11_PARSE(app, argc, argv);

  if (*tiny) {
    absl::Status st = peftd::model::WriteTinyModel(tiny_dir, shards, bf16);
    if (!st.ok()) {
      std::cerr << "peftd-worker make-tiny-model: " << st.message() << "\n";
      return 1;
    }
    std::cout << "wrote " << tiny_dir << "\n";
    return 0;
  }
  auto rows = peftd::worker::RunDemo(demo_dir, steps, threads);
  if (!rows.ok()) {
    std::cerr << "peftd-worker demo: " << rows.status().message() << "\n";
    return 1;
  }
  if (json_out) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : *rows) {
      j.push_back({{"variant", r.variant}, {"initial_eval_loss", r.initial_eval_loss},
                   {"final_eval_loss", r.final_eval_loss}, {"trainable_parameters", r.trainable_parameters},
                   {"trainable_percent", r.trainable_percent}, {"gate_sparsity", r.gate_sparsity},
                   {"tokens_per_second", r.tokens_per_second}, {"adapter_dir", r.adapter_dir}});
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%-10s %10s %10s %12s %9s %9s %10s\n", "method", "eval@0", "eval@end", "trainable",
                               "percent", "sparsity", "tokens/s");
  for (const auto& r : *rows) {
    std::cout << absl::StrFormat("%-10s %10.4f %10.4f %12d %8.2f%% %9s %10.0f\n", r.variant, r.initial_eval_loss,
                                 r.final_eval_loss, r.trainable_parameters, r.trainable_percent,
                                 r.gate_sparsity >= 0 ? absl::StrFormat("%.3f", r.gate_sparsity) : "-",
                                 r.tokens_per_second);
  }
  std::cout << "adapters (HF PEFT layout) in " << demo_dir << "/adapters/\n";
  return 0;
}
