// One epoch over real data, peftd against the loop users run today (bench/train/
// baseline_epoch.py: HF Trainer's defaults, dynamic padding to the longest record of the batch,
// labels −100 on the prompt, the full lm_head), in one invocation. Data from the shared fixtures:
// GSM8K as prompt/completion ("Question: ...\nAnswer:" + " answer") or Self-Instruct (seed tasks
// and user-oriented instructions) as chatml messages. Both sides get the same tokenized records
// in the same seeded order, the same batch size (records per optimizer step) and so the same
// steps; peftd packs each batch's records into rows of --max-seq-len (attention never crosses a
// record) and projects only the labelled positions onto the vocabulary. Prints one JSON
// document: seconds per epoch, real tokens per second, and the ratio to the faster peer run (one
// with glibc's defaults, one with GLIBC_TUNABLES keeping freed memory).
#include <sys/resource.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "adapters/blas_kernel.h"
#include "adapters/peft_model.h"
#include "bench/train/python_peer.h"
#include "nlohmann/json.hpp"
#include "worker/data/dataset.h"
#include "worker/data/packing.h"
#include "worker/data/tokenizer.h"
#include "worker/model/llama.h"
#include "worker/model/tiny_model.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"
#include "worker/train/trainer.h"

using namespace peftd;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Args {
  std::string config = "tiny";
  std::string data = "gsm8k";
  std::string fixtures = std::string(PEFTD_SOURCE_DIR) + "/../shared/fixtures";
  int64_t batch = 8;
  int64_t max_seq_len = 512;
  int64_t records = 0;  // 0 = the whole file(s)
  std::string methods = "lora,lora_S,dora,adalora,hut,adadhp";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  uint64_t seed = 42;
  bool baseline = true;
};

double PeakRssMb() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// User + system CPU seconds of this process so far, every thread: on a machine shared with other
// work, wall time measures that work too.
double ProcessCpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double LoadAverage() {
  double load[1] = {0};
  return getloadavg(load, 1) == 1 ? load[0] : -1;
}

// The fixture records as JSONL in our formats.
std::string RecordsJsonl(const Args& a) {
  std::string out;
  auto lines = [&](const std::string& file, auto&& each) {
    std::ifstream in(a.fixtures + "/data/" + file);
    if (!in) {
      std::cerr << "bench_epoch: cannot read " << a.fixtures << "/data/" << file << "\n";
      std::exit(2);
    }
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_discarded()) each(j);
    }
  };
  if (a.data == "gsm8k") {
    lines("gsm8k-test.jsonl", [&](const json& j) {
      out += json{{"prompt", "Question: " + j.value("question", "") + "\nAnswer:"},
                  {"completion", " " + j.value("answer", "")}}
                 .dump() +
             "\n";
    });
  } else {
    for (const char* file :
         {"self-instruct-seed_tasks.jsonl", "self-instruct-user_oriented_instructions.jsonl"}) {
      lines(file, [&](const json& j) {
        if (!j.contains("instances") || j["instances"].empty()) return;
        const json& instance = j["instances"][0];
        std::string user = j.value("instruction", "");
        const std::string input = instance.value("input", "");
        if (!input.empty()) user += "\n\n" + input;
        const std::string output = instance.value("output", "");
        if (user.empty() || output.empty()) return;
        out += json{{"messages",
                     {{{"role", "user"}, {"content", user}},
                      {{"role", "assistant"}, {"content", output}}}}}
                   .dump() +
               "\n";
      });
    }
  }
  return out;
}

// The peer's batches, packed: each step's records in as few rows of max_seq_len as they fit.
class PackedEpoch : public train::BatchSource {
 public:
  PackedEpoch(const std::vector<data::Example>& examples, int64_t batch, int64_t max_seq_len,
              uint64_t seed)
      : examples_(examples), batch_(batch), max_seq_len_(max_seq_len), seed_(seed) {}
  train::Batch Next() override {
    const size_t begin = static_cast<size_t>(index_ % BatchesPerEpoch()) * batch_;
    const size_t end = std::min(examples_.size(), begin + static_cast<size_t>(batch_));
    ++index_;
    std::vector<data::Example> rows = data::PackExamples(
        std::vector<data::Example>(examples_.begin() + begin, examples_.begin() + end),
        max_seq_len_, seed_);
    rows_ += static_cast<int64_t>(rows.size());
    std::vector<const data::Example*> picked;
    for (const data::Example& r : rows) picked.push_back(&r);
    return train::Collate(picked, 0, false);
  }
  double Epoch() const override { return static_cast<double>(index_) / BatchesPerEpoch(); }
  int64_t BatchesPerEpoch() const override {
    return (static_cast<int64_t>(examples_.size()) + batch_ - 1) / batch_;
  }
  std::map<std::string, int64_t> Position() const override { return {{"index", index_}}; }
  absl::Status Restore(const std::map<std::string, int64_t>&) override { return absl::OkStatus(); }
  int64_t rows() const { return rows_; }

 private:
  const std::vector<data::Example>& examples_;
  int64_t batch_, max_seq_len_;
  uint64_t seed_;
  int64_t index_ = 0, rows_ = 0;
};

json RunOurs(const model::ModelConfig& config, const std::string& variant,
             const std::vector<data::Example>& examples, const Args& a, int64_t tokens) {
  torch::manual_seed(static_cast<uint64_t>(a.seed));
  model::Llama llama(config);
  model::InitRandomWeights(llama);
  adapters::AdapterConfig ac;
  std::string method = variant;
  const bool gated = method.size() > 2 && method.substr(method.size() - 2) == "_S";
  if (gated) method = method.substr(0, method.size() - 2);
  auto kind = adapters::ParseMethod(method);
  if (!kind.ok()) return {{"variant", variant}, {"error", std::string(kind.status().message())}};
  ac.method = *kind;
  ac.lora = {.r = 8, .alpha = 16};
  ac.adalora = {.init_r = 8, .alpha = 16};
  ac.hut = {.r = 8};
  if (gated) ac.gate = adapters::GateOptions{};
  ac.targets.target_modules = {"q_proj", "v_proj"};
  PackedEpoch source(examples, a.batch, a.max_seq_len, a.seed);
  const int64_t steps = source.BatchesPerEpoch();
  ac.adalora_schedule = {.target_r = 4,
                         .tinit = std::max<int64_t>(steps / 10, 0),
                         .tfinal = std::max<int64_t>(steps / 10, 0),
                         .delta_t = 1};
  if (ac.adalora_schedule.tinit + ac.adalora_schedule.tfinal >= steps) {
    ac.adalora_schedule.tinit = ac.adalora_schedule.tfinal = 0;
  }
  auto peft = adapters::PeftModel::Apply(llama.get(), ac, steps);
  if (!peft.ok()) return {{"variant", variant}, {"error", std::string(peft.status().message())}};
  train::PeftLlama model(llama, std::move(*peft));
  train::TrainerOptions o;
  o.total_steps = steps;
  o.lr = {.peak_lr = 2e-4, .total_steps = steps};
  std::atomic<bool> cancelled{false};
  train::Trainer trainer(o, &model, &source, nullptr, nullptr, &cancelled);
  const double cpu0 = ProcessCpuSeconds();
  auto result = trainer.Run(std::nullopt);
  const double cpu_s = ProcessCpuSeconds() - cpu0;
  if (!result.ok()) {
    return {{"variant", variant}, {"error", std::string(result.status().message())}};
  }
  return {{"variant", variant},
          {"seconds", result->train_seconds},
          {"cpu_s", cpu_s},
          {"steps", result->steps},
          {"rows", source.rows()},
          {"tokens_per_s", tokens / result->train_seconds},
          {"final_loss", result->final_train_loss},
          {"peak_rss_mb", PeakRssMb()}};
}

json RunPeer(const Args& a, const std::string& records_file, bool keep_freed_memory) {
  std::ostringstream args;
  args << "baseline_epoch.py --config " << a.config << " --records " << records_file << " --batch "
       << a.batch << " --threads " << a.threads << " --seed " << a.seed;
  return bench::RunPythonPeer(args.str(), keep_freed_memory);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"One epoch over real data: peftd against an HF-Trainer-style PyTorch loop"};
  app.add_option("--config", a.config, "model: tiny or 100m")
      ->check(CLI::IsMember({"tiny", "100m"}));
  app.add_option("--data", a.data, "gsm8k (prompt/completion) or self-instruct (messages)")
      ->check(CLI::IsMember({"gsm8k", "self-instruct"}));
  app.add_option("--fixtures", a.fixtures, "the shared fixtures folder (data/, tok-llama2/)");
  app.add_option("--batch", a.batch, "records per optimizer step, both sides")
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-seq-len", a.max_seq_len, "tokens per record (truncation) and per row")
      ->check(CLI::Range(16, 1 << 16));
  app.add_option("--records", a.records, "the first N records of the shuffled epoch; 0 = all")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--methods", a.methods, "ours, comma-separated: lora,lora_S,dora,...");
  app.add_option("--threads", a.threads, "CPU threads, both sides")->check(CLI::Range(1, 1024));
  app.add_option("--seed", a.seed, "record order, initialisation");
  app.add_flag("!--no-baseline", a.baseline, "skip the PyTorch peer");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(a.threads);

  // The tiny model's own byte-level BPE, or the Llama 2 tokenizer (32,000 ids) for the 100M one.
  const model::ModelConfig config =
      a.config == "100m" ? model::BenchConfig100M() : model::TinyConfig();
  const fs::path scratch = fs::temp_directory_path() / ("bench_epoch." + std::to_string(getpid()));
  fs::create_directories(scratch);
  std::string tokenizer_dir = a.fixtures + "/tok-llama2";
  if (a.config == "tiny") {
    tokenizer_dir = (scratch / "tiny").string();
    if (absl::Status st = model::WriteTinyModel(tokenizer_dir); !st.ok()) {
      std::cerr << "bench_epoch: " << st << "\n";
      return 1;
    }
  }
  auto tokenizer = data::LoadTokenizer(tokenizer_dir);
  if (!tokenizer.ok()) {
    std::cerr << "bench_epoch: " << tokenizer.status() << "\n";
    return 1;
  }
  data::DatasetOptions options;
  options.max_seq_len = a.max_seq_len;
  options.skip_bad_lines = true;
  auto dataset = data::LoadDatasetFromBytes(RecordsJsonl(a), a.data, **tokenizer, options);
  if (!dataset.ok()) {
    std::cerr << "bench_epoch: " << dataset.status() << "\n";
    return 1;
  }
  // One seeded order, both sides.
  std::vector<data::Example> examples = std::move(dataset->examples);
  std::shuffle(examples.begin(), examples.end(), std::mt19937_64(a.seed));
  if (a.records > 0 && a.records < static_cast<int64_t>(examples.size())) {
    examples.resize(a.records);
  }
  int64_t tokens = 0, loss_tokens = 0, longest = 0;
  const std::string records_file = (scratch / "records.jsonl").string();
  {
    std::ofstream out(records_file);
    for (const data::Example& e : examples) {
      const auto& labels = e.labels.empty() ? e.input_ids : e.labels;
      tokens += static_cast<int64_t>(e.input_ids.size());
      longest = std::max<int64_t>(longest, static_cast<int64_t>(e.input_ids.size()));
      for (size_t j = 1; j < labels.size(); ++j) loss_tokens += labels[j] != -100 ? 1 : 0;
      out << json{{"input_ids", e.input_ids}, {"labels", labels}}.dump() << "\n";
    }
  }

  json out = {{"benchmark", "epoch"},
              {"config", a.config},
              {"blas_core", adapters::BlasCoreName()},
              {"parameters", config.NumParameters()},
              {"data", a.data},
              {"records", examples.size()},
              {"tokens", tokens},
              {"loss_tokens", loss_tokens},
              {"longest_record", longest},
              {"batch", a.batch},
              {"max_seq_len", a.max_seq_len},
              {"threads", a.threads},
              {"load_average_at_start", LoadAverage()},
              {"results", json::array()}};
  // The peer before and after ours, once with glibc's defaults and once keeping freed memory;
  // the fastest of them is the baseline.
  std::vector<json> peers;
  if (a.baseline) {
    peers.push_back(RunPeer(a, records_file, false));
    peers.push_back(RunPeer(a, records_file, true));
  }
  for (absl::string_view v : absl::StrSplit(a.methods, ',', absl::SkipEmpty())) {
    out["results"].push_back(RunOurs(config, std::string(v), examples, a, tokens));
  }
  if (a.baseline) {
    peers.push_back(RunPeer(a, records_file, true));
    peers.push_back(RunPeer(a, records_file, false));
    json best;
    for (const json& p : peers) {
      if (p.contains("seconds") && (!best.contains("seconds") ||
                                    p["seconds"].get<double>() < best["seconds"].get<double>())) {
        best = p;
      }
    }
    double best_cpu = 0;
    for (const json& p : peers) {
      if (p.contains("cpu_s") && (best_cpu == 0 || p["cpu_s"].get<double>() < best_cpu)) {
        best_cpu = p["cpu_s"].get<double>();
      }
    }
    out["baseline_runs"] = peers;
    out["baseline"] = best;
    out["baseline_cpu_s"] = best_cpu;
    if (best.contains("seconds")) {
      for (json& r : out["results"]) {
        if (r.contains("seconds")) {
          r["speedup_vs_baseline"] = best["seconds"].get<double>() / r["seconds"].get<double>();
        }
        if (r.contains("cpu_s") && best_cpu > 0) {
          r["cpu_speedup_vs_baseline"] = best_cpu / r["cpu_s"].get<double>();
        }
      }
    }
  }
  out["load_average_at_end"] = LoadAverage();
  std::cout << out.dump() << std::endl;
  fs::remove_all(scratch);
  return 0;
}
