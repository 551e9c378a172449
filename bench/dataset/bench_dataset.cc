// Start-up cost of a job's data: GSM8K test (fixtures) as prompt_completion JSONL, repeated to a
// larger file, validated alone (what the server does per upload) and loaded into Examples (what
// every job does first) with 1 and 2 tokenizing threads, under three tokenizers: the byte
// tokenizer of the tests (the dataset code's own cost), GPT-2's byte-level BPE and Llama 2's
// Metaspace BPE (tokenizer.json of the fixtures).
// Prints one JSON document. Usage: bench_dataset [--copies N] (default 10, ~13k records).
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "tests/worker_data/fake_tokenizer.h"
#include "worker/data/dataset.h"

using namespace peftd::data;
using nlohmann::json;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU seconds of the process: on a shared machine, wall time mostly measures the neighbours.
double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  int copies = 10;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--copies") == 0) copies = std::atoi(argv[++i]);
  }
  const char* env = std::getenv("PEFTD_FIXTURES");
  const std::string dir = env != nullptr && *env != 0 ? env : PEFTD_FIXTURES_DIR;
  std::ifstream in(dir + "/data/gsm8k-test.jsonl");
  if (!in) {
    std::cout << json{{"error", "fixture missing: " + dir + "/data/gsm8k-test.jsonl"}} << "\n";
    return 1;
  }
  std::string converted;
  for (std::string line; std::getline(in, line);) {
    json q = json::parse(line);
    converted += json{{"prompt", "Question: " + q["question"].get<std::string>() + "\nAnswer:"},
                      {"completion", " " + q["answer"].get<std::string>()}}
                     .dump() +
                 "\n";
  }
  std::string jsonl;
  for (int c = 0; c < copies; ++c) jsonl += converted;

  json out = {{"bench", "dataset"},
              {"source", "gsm8k-test.jsonl as prompt_completion"},
              {"copies", copies},
              {"bytes", jsonl.size()}};
  auto t0 = std::chrono::steady_clock::now();
  double c0 = CpuSeconds();
  ValidationResult v = ValidateRecords(jsonl);
  double s = Seconds(t0), cpu = CpuSeconds() - c0;
  out["validate"] = {{"records", v.records},
                     {"seconds", s},
                     {"cpu_seconds", cpu},
                     {"records_per_cpu_s", v.records / cpu},
                     {"mb_per_cpu_s", jsonl.size() / cpu / 1e6}};

  std::vector<std::pair<std::string, std::unique_ptr<Tokenizer>>> tokenizers;
  tokenizers.emplace_back("bytes", std::make_unique<FakeTokenizer>());
  for (const char* name : {"tok-gpt2", "tok-llama2"}) {
    auto t = LoadTokenizer(dir + "/" + name);
    if (!t.ok()) {
      std::cout << json{{"error", std::string(t.status().message())}} << "\n";
      return 1;
    }
    tokenizers.emplace_back(name, std::move(*t));
  }
  for (const auto& [name, tokenizer] : tokenizers) {
    for (int threads : {1, 2}) {
      DatasetOptions options;
      options.max_seq_len = 4096;
      options.num_threads = threads;
      t0 = std::chrono::steady_clock::now();
      c0 = CpuSeconds();
      auto d = LoadDatasetFromBytes(jsonl, "gsm8k.jsonl", *tokenizer, options);
      s = Seconds(t0);
      cpu = CpuSeconds() - c0;
      if (!d.ok()) {
        std::cout << json{{"error", std::string(d.status().message())}} << "\n";
        return 1;
      }
      out["load"][name]["threads_" + std::to_string(threads)] = {
          {"records", d->stats.records},
          {"tokens", d->stats.tokens},
          {"seconds", s},
          {"cpu_seconds", cpu},
          {"records_per_s", d->stats.records / s},
          {"records_per_cpu_s", d->stats.records / cpu}};
    }
  }
  std::cout << out.dump() << "\n";
  return 0;
}
