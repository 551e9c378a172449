// Training throughput of peftd against PyTorch eager + a PEFT-style LoRA (bench/train/
// baseline_pytorch_peft.py, run in the same invocation), on the tiny model and a ~100M
// LLaMA-shaped model. Prints one JSON document: tokens/s, step time, peak RSS, model FLOPs
// utilisation against the fp32 matmul peak measured here, and the ratio to the baseline.
// With --arch gpt2|roberta|deberta-v2|t5, the family's tiny model against its own PyTorch peer
// instead (bench/train/family_bench.h).
// Usage: bench_train [--arch llama|gpt2|roberta|deberta-v2|t5] [--config tiny|100m]
//                    [--steps N] [--warmup N] [--batch B] [--seq T] [--methods lora,lora_S,...]
//                    [--threads N] [--no-baseline]
//                    [--profile PREFIX]  (writes PREFIX.<variant>.trace.json for chrome://tracing)
//                    [--count-ops]  ATen ops, autograd nodes and allocations of one step, both
//                                   sides (bench/train/op_counts.h); the counted step is the
//                                   last warmup step, so timings are unaffected
//                    [--interleave]  one peer run before each variant instead of two groups of
//                                    two around all of them
//                    [--data-parallel]  1 process x 2 threads against 2 processes x 1 thread
//                                       (train::DataParallel over 127.0.0.1) on the same global
//                                       batch: tokens/s and the allreduce share of a step, the
//                                       time waited (exposed) and the time the buckets ran
//                                       (total); default method lora
//                    [--bucket-bytes N]  data-parallel gradient bucket size (0: the trainer's)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "adapters/blas_kernel.h"
#include "adapters/peft_model.h"
#include "bench/train/allreduce_bytes.h"
#include "bench/train/family_bench.h"
#include "bench/train/op_counts.h"
#include "bench/train/python_peer.h"
#include "bench/train/step_times.h"
#include "nlohmann/json.hpp"
#include "worker/model/llama.h"
#include "worker/model/tiny_model.h"
#include "worker/train/data_parallel.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"
#include "worker/train/trainer.h"

extern char** environ;

using namespace peftd;
using bench::Median;
using bench::PeakRssMb;
using bench::SetBaseline;
using bench::StepTimes;
using nlohmann::json;

namespace {

// fp32 GEMM peak of this machine, as LibTorch reaches it: the best of a few sizes and rounds
// (other load on the machine only ever lowers a round, so the best is the closest to the peak).
double MeasureMatmulPeakGflops() {
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    for (int64_t n : {1024, 2048}) {
      torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
      for (int i = 0; i < 2; ++i) torch::matmul(a, b);
      const int reps = n == 1024 ? 10 : 4;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) torch::matmul(a, b);
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      best = std::max(best, 2.0 * n * n * n / s / 1e9);
    }
  }
  return best;
}

// Model FLOPs per token of PEFT training with a frozen base: forward 2·N and input-gradient 2·N
// for every frozen matmul weight (no weight gradient), 6·N for trainable adapter tensors, and
// attention scores and values (4·T·H·D per layer forward, twice that backward).
double FlopsPerToken(const model::ModelConfig& c, int64_t seq, int64_t trainable) {
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
               kv = c.num_key_value_heads * c.head_dim;
  const double linear =
      c.num_hidden_layers * (h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size) +
      static_cast<double>(c.vocab_size) * h;
  const double attention = 12.0 * c.num_hidden_layers * seq * q;
  return 4.0 * linear + 6.0 * trainable + attention;
}

// 1-minute load average: other work on the machine makes every figure of a run slower.
double LoadAverage() {
  double load[1] = {0};
  return getloadavg(load, 1) == 1 ? load[0] : -1;
}

// --bucket-bytes: TrainerOptions::allreduce_bucket_bytes of the data-parallel ranks.
int64_t dp_bucket_bytes = 0;

// `batch` is the global batch; with `dp` this process trains its share of it.
json RunOne(const model::ModelConfig& config, const std::string& variant, int64_t batch,
            int64_t seq, int64_t steps, int64_t warmup, const std::string& profile,
            bool count_ops = false, train::DataParallel* dp = nullptr) {
  torch::manual_seed(0);
  model::Llama llama(config);
  model::InitRandomWeights(llama);
  auto ac = bench::VariantAdapterConfig(variant, {"q_proj", "v_proj"});
  if (!ac.ok()) return {{"variant", variant}, {"error", std::string(ac.status().message())}};
  auto peft = adapters::PeftModel::Apply(llama.get(), *ac, steps + warmup);
  if (!peft.ok()) return {{"variant", variant}, {"error", std::string(peft.status().message())}};
  const int64_t trainable = (*peft)->Count().trainable;
  train::PeftLlama model(llama, std::move(*peft));
  std::vector<train::Example> examples;
  for (int64_t i = 0; i < batch; ++i) {
    train::Example e;
    torch::Tensor ids = torch::randint(0, config.vocab_size, {seq}, torch::kLong);
    e.input_ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + seq);
    examples.push_back(e);
  }
  const int world = dp ? dp->world_size() : 1;
  train::MemoryBatchSource source(examples, batch / world, 0, 1);
  if (dp) source.SetShard(dp->rank(), world);
  train::TrainerOptions o;
  o.data_parallel = dp;
  o.allreduce_bucket_bytes = dp_bucket_bytes;
  o.total_steps = steps + warmup;
  o.lr = {.peak_lr = 2e-4, .total_steps = o.total_steps};
  bench::OpCounter counter;
  StepTimes times(count_ops ? &counter : nullptr, std::max<int64_t>(warmup, 1));
  std::atomic<bool> cancelled{false};
  train::Trainer trainer(o, &model, &source, nullptr, &times, &cancelled);
  std::unique_ptr<torch::autograd::profiler::RecordProfile> recording;
  if (!profile.empty()) {
    recording = std::make_unique<torch::autograd::profiler::RecordProfile>(profile + "." + variant +
                                                                           ".trace.json");
  }
  auto result = trainer.Run(std::nullopt);
  recording.reset();
  if (!result.ok())
    return {{"variant", variant}, {"error", std::string(result.status().message())}};
  // The median step: a step that another process on the machine slowed down does not count.
  const double step_s =
      Median(std::vector<double>(times.seconds.begin() + warmup, times.seconds.end()));
  const double cpu_s =
      Median(std::vector<double>(times.cpu_seconds.begin() + warmup, times.cpu_seconds.end()));
  const double tokens_per_s = batch * seq / step_s;
  json out = {
      {"variant", variant},
      {"step_s", step_s},
      {"tokens_per_s", tokens_per_s},
      {"cpu_s", cpu_s},
      {"tokens_per_cpu_s", batch * seq / cpu_s},
      {"every_step_s", times.seconds},
      {"every_step_cpu_s", times.cpu_seconds},
      {"model_flops_per_token", FlopsPerToken(config, seq, trainable)},
      {"trainable_parameters", trainable},
      {"peak_rss_mb", PeakRssMb()},
      {"final_loss", result->final_train_loss},
      {"allreduce_s_per_step", result->allreduce_seconds / static_cast<double>(steps + warmup)}};
  if (dp) {  // waited (the figure above) against ran; what each step sums, in how many buckets
    out["allreduce_total_s_per_step"] =
        result->allreduce_busy_seconds / static_cast<double>(steps + warmup);
    out["allreduce_gradient_bytes"] = result->allreduce_gradient_bytes;
    out["allreduce_buckets"] = result->allreduce_buckets;
  }
  if (count_ops) out["op_counts"] = times.counts;
  return out;
}

uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return 0;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// 2 processes x 1 thread of this binary (--dp-rank), each printing its JSON to a file.
json RunTwoRanks(const std::string& self, const std::string& config, const std::string& variant,
                 int64_t batch, int64_t seq, int64_t steps, int64_t warmup) {
  namespace fs = std::filesystem;
  const std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  std::vector<pid_t> pids;
  std::vector<fs::path> outs;
  for (int rank = 0; rank < 2; ++rank) {
    outs.push_back(fs::temp_directory_path() /
                   ("bench_train_dp." + std::to_string(::getpid()) + "." + std::to_string(rank)));
    std::vector<std::string> args = {self,
                                     "--config",
                                     config,
                                     "--methods",
                                     variant,
                                     "--batch",
                                     std::to_string(batch),
                                     "--seq",
                                     std::to_string(seq),
                                     "--steps",
                                     std::to_string(steps),
                                     "--warmup",
                                     std::to_string(warmup),
                                     "--threads",
                                     "1",
                                     "--dp-rank",
                                     std::to_string(rank),
                                     "--dp-rendezvous",
                                     addr,
                                     "--bucket-bytes",
                                     std::to_string(dp_bucket_bytes)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, outs.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid = 0;
    if (posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&actions);
    pids.push_back(pid);
  }
  json ranks = json::array();
  for (int rank = 0; rank < 2; ++rank) {
    int status = 0;
    if (pids[rank] > 0) ::waitpid(pids[rank], &status, 0);
    std::ifstream in(outs[rank]);
    json j = json::parse(in, nullptr, false);
    ranks.push_back(j.is_discarded() ? json{{"error", "rank " + std::to_string(rank) + " failed"}}
                                     : j);
    fs::remove(outs[rank]);
  }
  return ranks;
}

json RunBaseline(const std::string& config, int64_t batch, int64_t seq, int64_t steps,
                 int64_t warmup, int threads, bool keep_freed_memory, bool count_ops) {
  std::ostringstream args;
  args << "baseline_pytorch_peft.py --config " << config << " --batch " << batch << " --seq " << seq
       << " --steps " << steps << " --warmup " << warmup << " --threads " << threads;
  if (count_ops) args << " --count-ops";
  return bench::RunPythonPeer(args.str(), keep_freed_memory);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_name = "tiny";
  int64_t steps = 20, warmup = 3, batch = 8, seq = 128;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<std::string> variants = {"lora",      "lora_S", "dora",  "dora_S", "adalora",
                                       "adalora_S", "hut",    "hut_S", "adadhp", "adadhp_S"};
  bool baseline = true;
  std::string profile;  // --profile PREFIX: a chrome://tracing file per variant
  CLI::App app{"Training tokens/s and MFU of every method against PyTorch eager + PEFT"};
  app.add_option("--config", config_name, "model: tiny or 100m")
      ->check(CLI::IsMember({"tiny", "100m"}));
  app.add_option("--steps", steps, "timed optimizer steps");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--batch", batch, "sequences per step");
  app.add_option("--seq", seq, "tokens per sequence");
  app.add_option("--threads", threads, "intra-op threads (default: the core count)");
  app.add_option("--profile", profile, "write a chrome://tracing file per variant: PREFIX");
  app.add_flag("!--no-baseline", baseline, "skip the PyTorch peer");
  app.add_option("--methods", variants, "comma-separated variants")->delimiter(',');
  bool count_ops = false, interleave = false;
  app.add_flag("--count-ops", count_ops,
               "count ATen ops, autograd nodes and allocations of one step, both sides");
  app.add_flag("--interleave", interleave, "one peer run right before each variant");
  bool data_parallel = false;
  app.add_flag("--data-parallel", data_parallel,
               "1 process x 2 threads against 2 processes x 1 thread on the same global batch");
  int dp_rank = -1;
  std::string dp_rendezvous;
  app.add_option("--dp-rank", dp_rank, "(internal) run as this rank of 2")->group("");
  app.add_option("--dp-rendezvous", dp_rendezvous, "(internal) rank 0's host:port")->group("");
  std::string arch = "llama";
  app.add_option("--arch", arch,
                 "model family: llama (--config tiny|100m), or gpt2, roberta, deberta-v2, t5 at "
                 "tiny size against their own PyTorch peer")
      ->check(CLI::IsMember({"llama", "gpt2", "roberta", "deberta-v2", "t5"}));
  app.add_option("--bucket-bytes", dp_bucket_bytes,
                 "data-parallel gradient bucket bytes (0: an eighth of the gradient, 256 KiB..25 "
                 "MiB)");
  CLI11_PARSE(app, argc, argv);
  if (arch != "llama") {
    if (config_name != "tiny" || count_ops || interleave || data_parallel || !profile.empty()) {
      std::cerr << "--arch " << arch
                << ": only the tiny model, without --count-ops, --interleave, --data-parallel "
                   "and --profile (those are LLaMA's)\n";
      return 2;
    }
    bench::FamilyBenchOptions o{.arch = arch,
                                .batch = batch,
                                .seq = seq,
                                .steps = steps,
                                .warmup = warmup,
                                .threads = threads,
                                .variants = variants,
                                .baseline = baseline};
    const json out = bench::RunFamilyBench(o);
    std::cout << out.dump() << std::endl;
    return out.contains("error") ? 1 : 0;
  }
  if (dp_rank >= 0) {  // one rank of --data-parallel: its result on stdout
    torch::set_num_threads(threads);
    train::DataParallelOptions o;
    o.rank = dp_rank;
    o.world_size = 2;
    o.rendezvous = dp_rendezvous;
    o.key = "bench_train";
    auto dp = train::DataParallel::Connect(o);
    if (!dp.ok()) {
      std::cout << json{{"error", std::string(dp.status().message())}}.dump() << std::endl;
      return 1;
    }
    const model::ModelConfig config =
        config_name == "100m" ? model::BenchConfig100M() : model::TinyConfig();
    json r = RunOne(config, variants.at(0), batch, seq, steps, warmup, "", false, dp->get());
    r["rank"] = dp_rank;
    std::cout << r.dump() << std::endl;
    return 0;
  }
  if (data_parallel) {
    const model::ModelConfig config =
        config_name == "100m" ? model::BenchConfig100M() : model::TinyConfig();
    if (app.count("--methods") == 0) variants = {"lora"};
    json out = {{"benchmark", "train_data_parallel"},
                {"config", config_name},
                {"global_batch", batch},
                {"seq", seq},
                {"load_average_at_start", LoadAverage()},
                // The bytes each rank sums per step for LoRA q,v r=8, from the modules the worker
                // builds: docs/performance.md's estimate for N machines starts here.
                {"lora_qv_r8_gradient_bytes",
                 {{config_name, bench::LoraQvGradientBytes(config)},
                  {"llama2_7b", bench::LoraQvGradientBytes(bench::Llama2_7BConfig())},
                  {"llama3_8b", bench::LoraQvGradientBytes(bench::Llama3_8BConfig())}}},
                {"results", json::array()}};
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    for (const auto& v : variants) {
      torch::set_num_threads(2);
      json one = RunOne(config, v, batch, seq, steps, warmup, "");
      json two = RunTwoRanks(self, config_name, v, batch, seq, steps, warmup);
      json r = {
          {"variant", v}, {"one_process_two_threads", one}, {"two_processes_one_thread", two}};
      const json& rank0 = two[0];
      if (one.contains("tokens_per_s") && rank0.contains("tokens_per_s")) {
        r["speedup_two_processes"] =
            rank0["tokens_per_s"].get<double>() / one["tokens_per_s"].get<double>();
        r["allreduce_share_of_step"] =
            rank0["allreduce_s_per_step"].get<double>() / rank0["step_s"].get<double>();
        r["allreduce_total_share_of_step"] =
            rank0["allreduce_total_s_per_step"].get<double>() / rank0["step_s"].get<double>();
      }
      if (v == "lora" && rank0.contains("allreduce_gradient_bytes")) {
        r["gradient_bytes_match_lora_qv_r8"] =
            rank0["allreduce_gradient_bytes"].get<int64_t>() == bench::LoraQvGradientBytes(config);
      }
      out["results"].push_back(r);
    }
    out["load_average_at_end"] = LoadAverage();
    std::cout << out.dump() << std::endl;
    return 0;
  }
  torch::set_num_threads(threads);
  const model::ModelConfig config =
      config_name == "100m" ? model::BenchConfig100M() : model::TinyConfig();
  double peak = MeasureMatmulPeakGflops();
  json out = {{"benchmark", "train_throughput"},
              {"config", config_name},
              {"parameters", config.NumParameters()},
              {"batch", batch},
              {"seq", seq},
              {"threads", threads},
              // OpenBLAS's kernels, the same on both sides: the peer runs in this environment.
              {"blas_core", adapters::BlasCoreName()},
              {"load_average_at_start", LoadAverage()},
              {"results", json::array()}};
  // The baseline before and after ours, each time with glibc's defaults and keeping freed memory;
  // with --interleave, one run (alternating the two) right before each variant instead.
  std::vector<json> baselines;
  auto run_baseline = [&](bool keep) {
    baselines.push_back(
        RunBaseline(config_name, batch, seq, steps, warmup, threads, keep, count_ops));
  };
  if (baseline && !interleave) {
    for (bool keep : {false, true}) run_baseline(keep);
  }
  for (size_t i = 0; i < variants.size(); ++i) {
    if (baseline && interleave) run_baseline(i % 2 == 1);
    out["results"].push_back(
        RunOne(config, variants[i], batch, seq, steps, warmup, profile, count_ops));
  }
  peak = std::max(peak, MeasureMatmulPeakGflops());  // again after the runs: the best of both
  out["matmul_peak_gflops"] = peak;
  out["load_average_at_end"] = LoadAverage();
  for (auto& r : out["results"]) {
    if (r.contains("tokens_per_s")) {
      r["mfu"] =
          r["tokens_per_s"].get<double>() * r["model_flops_per_token"].get<double>() / (peak * 1e9);
    }
  }
  if (baseline) {
    if (!interleave) {
      for (bool keep : {true, false}) run_baseline(keep);
    }
    SetBaseline(baselines, out);
    if (out["baseline"].contains("tokens_per_s")) {
      const double base = out["baseline"]["tokens_per_s"].get<double>();
      // The baseline trains LoRA r = 8 on q_proj and v_proj: r·(in + out) per module.
      const int64_t q = config.num_attention_heads * config.head_dim,
                    kv = config.num_key_value_heads * config.head_dim;
      const int64_t lora =
          config.num_hidden_layers * 8 * ((config.hidden_size + q) + (config.hidden_size + kv));
      out["baseline"]["mfu"] = base * FlopsPerToken(config, seq, lora) / (peak * 1e9);
    }
    if (count_ops) {
      for (const json& run : baselines) {
        if (run.contains("op_counts")) {
          out["baseline_op_counts"] = run["op_counts"];
          break;
        }
      }
    }
  }
  // Every variant's counts next to the peer's: the ratios a timing on a busy machine cannot give.
  if (count_ops) {
    json summary = json::object();
    for (const auto& r : out["results"]) {
      if (!r.contains("op_counts") || r["op_counts"].empty()) continue;
      const json& c = r["op_counts"];
      summary[r["variant"].get<std::string>()] = {{"aten_ops", c["aten_ops"]},
                                                  {"autograd_nodes", c["autograd_nodes"]},
                                                  {"allocations", c["allocations"]}};
    }
    if (out.contains("baseline_op_counts")) {
      const json& c = out["baseline_op_counts"];
      summary["peer_lora"] = {{"aten_ops", c["aten_ops"]},
                              {"autograd_nodes", c["autograd_nodes"]},
                              {"allocations", c["allocations"]}};
    }
    out["op_count_summary"] = summary;
  }
  std::cout << out.dump() << std::endl;
  return 0;
}
