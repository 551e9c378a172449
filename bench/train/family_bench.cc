#include "bench/train/family_bench.h"

#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "adapters/blas_kernel.h"
#include "adapters/peft_model.h"
#include "bench/train/python_peer.h"
#include "bench/train/step_times.h"
#include "common/model_config.h"
#include "common/model_modules.h"
#include "worker/model/deberta_v2_loader.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/roberta_loader.h"
#include "worker/model/t5_loader.h"
#include "worker/model/tiny_deberta_v2.h"
#include "worker/model/tiny_gpt2.h"
#include "worker/model/tiny_roberta.h"
#include "worker/model/tiny_t5.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_deberta_v2.h"
#include "worker/train/peft_gpt2.h"
#include "worker/train/peft_roberta.h"
#include "worker/train/peft_t5.h"
#include "worker/train/trainer.h"

namespace peftd::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

absl::Status WriteTiny(const std::string& arch, const std::string& dir) {
  if (arch == "gpt2") return model::WriteTinyGpt2Model(dir);
  if (arch == "roberta") return model::WriteTinyRobertaModel(dir);
  if (arch == "deberta-v2") return model::WriteTinyDebertaV2Model(dir);
  if (arch == "t5") return model::WriteTinyT5Model(dir);
  return absl::InvalidArgumentError("--arch: gpt2, roberta, deberta-v2 or t5, got '" + arch + "'");
}

// The family's model from `dir` with `ac` applied, as the worker builds it (GPT-2's Conv1D
// layers fan_in_fan_out, RoBERTa's and DeBERTa's classifier trained whole).
absl::StatusOr<std::unique_ptr<train::PeftTrainable>> Trainable(const model::ModelConfig& config,
                                                                const std::string& dir,
                                                                adapters::AdapterConfig ac,
                                                                int64_t total_steps) {
  torch::manual_seed(0);
  if (config.IsGpt2()) {
    auto m = model::LoadGpt2(dir);
    if (!m.ok()) return m.status();
    ac.fan_in_fan_out = true;
    auto peft = adapters::PeftModel::Apply(m->get(), std::move(ac), total_steps);
    if (!peft.ok()) return peft.status();
    return std::make_unique<train::PeftGpt2>(*m, std::move(*peft));
  }
  if (config.IsRoberta()) {
    auto m = model::LoadRoberta(dir);
    if (!m.ok()) return m.status();
    ac.modules_to_save = {"classifier"};
    auto peft = adapters::PeftModel::Apply(m->get(), std::move(ac), total_steps);
    if (!peft.ok()) return peft.status();
    return std::make_unique<train::PeftRoberta>(*m, std::move(*peft));
  }
  if (config.IsDebertaV2()) {
    auto m = model::LoadDebertaV2(dir);
    if (!m.ok()) return m.status();
    ac.modules_to_save = {"classifier"};
    auto peft = adapters::PeftModel::Apply(m->get(), std::move(ac), total_steps);
    if (!peft.ok()) return peft.status();
    return std::make_unique<train::PeftDebertaV2>(*m, std::move(*peft));
  }
  auto m = model::LoadT5(dir);
  if (!m.ok()) return m.status();
  auto peft = adapters::PeftModel::Apply(m->get(), std::move(ac), total_steps);
  if (!peft.ok()) return peft.status();
  return std::make_unique<train::PeftT5>(*m, std::move(*peft));
}

// The peer's batch: random ids in [3, vocab) (no special token); RoBERTa starts every row with
// <s> and DeBERTa with [CLS] (both bos_token_id) and give it a class, T5 adds targets of half the
// length.
std::vector<train::Example> Batch(const model::ModelConfig& config, int64_t batch, int64_t seq) {
  std::vector<train::Example> examples;
  for (int64_t i = 0; i < batch; ++i) {
    train::Example e;
    torch::Tensor ids = torch::randint(3, config.vocab_size, {seq}, torch::kLong);
    e.input_ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + seq);
    if (config.IsRoberta() || config.IsDebertaV2()) {
      e.input_ids[0] = config.bos_token_id >= 0 ? config.bos_token_id : 0;
      e.class_label = i % config.num_labels;
    }
    if (config.IsT5()) {
      torch::Tensor t = torch::randint(3, config.vocab_size, {std::max<int64_t>(seq / 2, 1)});
      e.target_ids.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    }
    examples.push_back(std::move(e));
  }
  return examples;
}

int64_t TokensPerStep(const model::ModelConfig& config, int64_t batch, int64_t seq) {
  return batch * (seq + (config.IsT5() ? std::max<int64_t>(seq / 2, 1) : 0));
}

json RunVariant(const model::ModelConfig& config, const std::string& dir,
                const std::string& variant, const FamilyBenchOptions& o) {
  auto ac = VariantAdapterConfig(variant, model::DefaultTargetModules(config));
  if (!ac.ok()) return {{"variant", variant}, {"error", std::string(ac.status().message())}};
  const int64_t total = o.steps + o.warmup;
  auto trainable = Trainable(config, dir, *ac, total);
  if (!trainable.ok()) {
    return {{"variant", variant}, {"error", std::string(trainable.status().message())}};
  }
  const int64_t count = (*trainable)->peft().Count().trainable;
  const int64_t pad = config.pad_token_id >= 0 ? config.pad_token_id : 0;
  train::MemoryBatchSource source(Batch(config, o.batch, o.seq), o.batch, pad, 1,
                                  /*classification=*/config.IsRoberta() || config.IsDebertaV2());
  train::TrainerOptions to;
  to.total_steps = total;
  to.lr = {.peak_lr = 2e-4, .total_steps = total};
  StepTimes times(nullptr, 0);
  std::atomic<bool> cancelled{false};
  train::Trainer trainer(to, trainable->get(), &source, nullptr, &times, &cancelled);
  auto result = trainer.Run(std::nullopt);
  if (!result.ok())
    return {{"variant", variant}, {"error", std::string(result.status().message())}};
  const auto tail = [&](const std::vector<double>& v) {
    return Median(std::vector<double>(v.begin() + std::min<size_t>(o.warmup, v.size()), v.end()));
  };
  const double step_s = tail(times.seconds), cpu_s = tail(times.cpu_seconds);
  const double tokens = static_cast<double>(TokensPerStep(config, o.batch, o.seq));
  return {{"variant", variant},
          {"step_s", step_s},
          {"tokens_per_s", tokens / step_s},
          {"cpu_s", cpu_s},
          {"tokens_per_cpu_s", tokens / cpu_s},
          {"every_step_s", times.seconds},
          {"every_step_cpu_s", times.cpu_seconds},
          {"trainable_parameters", count},
          {"peak_rss_mb", PeakRssMb()},
          {"final_loss", result->final_train_loss}};
}

}  // namespace

json RunFamilyBench(const FamilyBenchOptions& o) {
  const fs::path dir =
      fs::temp_directory_path() / ("bench_train_" + o.arch + "_" + std::to_string(::getpid()));
  absl::Status written = WriteTiny(o.arch, dir.string());
  if (!written.ok()) return {{"error", std::string(written.message())}};
  absl::StatusOr<model::ModelConfig> config = model::ReadModelConfig(dir.string());
  if (!config.ok()) return {{"error", std::string(config.status().message())}};
  torch::set_num_threads(o.threads);
  json out = {{"benchmark", "train_throughput"},
              {"arch", o.arch},
              {"config", "tiny"},
              {"architecture", config->architecture},
              {"default_targets", model::DefaultTargetModules(*config)},
              {"batch", o.batch},
              {"seq", o.seq},
              {"tokens_per_step", TokensPerStep(*config, o.batch, o.seq)},
              {"threads", o.threads},
              // OpenBLAS's kernels, the same on both sides: the peer runs in this environment.
              {"blas_core", adapters::BlasCoreName()},
              {"results", json::array()}};
  std::vector<json> baselines;
  auto run_baseline = [&](bool keep) {
    std::ostringstream args;
    args << "baseline_families.py --arch " << o.arch << " --model-dir " << dir.string()
         << " --batch " << o.batch << " --seq " << o.seq << " --steps " << o.steps << " --warmup "
         << o.warmup << " --threads " << o.threads;
    baselines.push_back(RunPythonPeer(args.str(), keep));
  };
  // As the LLaMA bench: the peer before and after ours, with glibc's defaults and keeping freed
  // memory; the fastest run is the baseline.
  if (o.baseline) {
    for (bool keep : {false, true}) run_baseline(keep);
  }
  for (const std::string& v : o.variants) out["results"].push_back(RunVariant(*config, dir, v, o));
  if (o.baseline) {
    for (bool keep : {true, false}) run_baseline(keep);
    SetBaseline(baselines, out);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return out;
}

}  // namespace peftd::bench
