// Calibration of the peak-memory estimate (common/memory_estimate.h) against the real worker:
// `peftd-worker train` runs a few steps in a child process and the test reads the child's peak
// RSS (wait4's ru_maxrss). The estimate must lie within kLowFactor..kHighFactor of it: high
// enough that a job the estimate admits does not exhaust the host, low enough that it does not
// refuse jobs that fit. Memory bounds only; no timing is asserted.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "adapters/safetensors_torch.h"
#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/memory_estimate.h"
#include "common/model_config.h"
#include "nlohmann/json.hpp"
#include "tests/worker_run/test_data.h"
#include "worker/model/llama.h"
#include "worker/model/tiny_model.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The estimate over the measured peak RSS must lie in [kLowFactor, kHighFactor]: it may
// overestimate (padding to max_seq_len, one token per 2 bytes of data, a fixed runtime) by up to
// 2.5x, and never underestimate by more than 10%.
constexpr double kLowFactor = 0.9;
constexpr double kHighFactor = 2.5;

const std::string kWorker = std::string(PEFTD_BINARY_DIR) + "/worker/peftd-worker";

// Runs peftd-worker with `args`; returns its exit code and peak RSS in bytes.
std::pair<int, int64_t> RunMeasured(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv{const_cast<char*>(kWorker.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(kWorker.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, static_cast<int64_t>(usage.ru_maxrss) * 1024};
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A LLaMA-shaped model folder for `config` with random weights and the tiny model's tokenizer
// grown to its vocabulary.
void WriteModel(const fs::path& dir, const model::ModelConfig& config) {
  ASSERT_TRUE(model::WriteTinyModel(dir.string()).ok());  // tokenizer_config.json and the rest
  testing::WriteFile(dir / "config.json", model::ModelConfigJson(config));
  testing::WriteFile(dir / "tokenizer.json", model::TinyTokenizerJson(config.vocab_size));
  model::Llama llama(config);
  torch::NoGradGuard no_grad;
  torch::manual_seed(7);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : llama->named_parameters()) {
    torch::Tensor p = item.value();
    if (item.key().find("norm") == std::string::npos) p.normal_(0.0, 0.02);
    tensors[item.key()] = p;
  }
  ASSERT_TRUE(adapters::SaveTensors((dir / "model.safetensors").string(), tensors).ok());
}

// Records long enough to fill max_seq_len after truncation.
void WriteLongText(const fs::path& path, int records, int chars) {
  std::ofstream out(path);
  for (int i = 0; i < records; ++i) {
    std::string s;
    for (int j = 0; j < chars; ++j) s.push_back(static_cast<char>('a' + (i * 7 + j * j) % 26));
    out << json{{"text", s}}.dump() << "\n";
  }
}

struct Calibration {
  std::string name;
  model::ModelConfig config;
  json spec;
  int records = 0;
  int chars = 0;
};

class MemoryEstimateCalibration : public ::testing::Test {
 protected:
  void Check(const Calibration& run) {
    const fs::path dir = testing::FreshDir("mem_" + run.name);
    WriteModel(dir / "model", run.config);
    WriteLongText(dir / "train.jsonl", run.records, run.chars);
    json job = {{"base_model", "model"},
                {"method", "LORA"},
                {"training_dataset_id", "train.jsonl"},
                {"max_steps", 2},
                {"checkpoint_interval_steps", 1000},
                {"num_threads", 2}};
    job.merge_patch(run.spec);
    testing::WriteFile(dir / "job.json", job.dump(2));

    const auto [code, rss] =
        RunMeasured({"train", (dir / "job.json").string(), "--out", (dir / "out").string()},
                    dir / "worker.log");
    ASSERT_EQ(code, 0) << Slurp(dir / "worker.log");

    v1::JobSpec spec;
    spec.set_base_model("model");
    spec.set_method(job["method"] == "DORA" ? v1::DORA : v1::LORA);
    spec.set_training_dataset_id("train.jsonl");
    spec.set_max_seq_len(job["max_seq_len"].get<int>());
    spec.set_batch_size(job["batch_size"].get<int>());
    spec.mutable_lora()->set_r(job["lora"]["r"].get<int>());
    spec.mutable_token_gate()->set_enabled(job.contains("token_gate"));
    for (const auto& m : job["target_modules"]) spec.add_target_modules(m.get<std::string>());
    if (job.contains("layers_to_transform")) {
      for (const auto& l : job["layers_to_transform"]) spec.add_layers_to_transform(l.get<int>());
    }
    spec = WithDefaults(spec);
    ASSERT_TRUE(ValidateJobSpec(spec).ok());
    auto config = model::ReadModelConfig((dir / "model").string());
    ASSERT_TRUE(config.ok()) << config.status();
    auto resolved = ResolveSpecOnModel(spec, *config);
    ASSERT_TRUE(resolved.ok()) << resolved.status();
    const MemoryEstimate estimate = EstimatePeakMemory(
        spec, *resolved, static_cast<int64_t>(fs::file_size(dir / "train.jsonl")));
    const double ratio = static_cast<double>(estimate.total()) / static_cast<double>(rss);
    std::cout << run.name << ": peak RSS " << GiB(rss) << " (" << rss << " bytes), estimate "
              << estimate.Summary() << ", estimate / RSS = " << ratio << "\n";
    EXPECT_GE(ratio, kLowFactor) << run.name;
    EXPECT_LE(ratio, kHighFactor) << run.name;
    fs::remove_all(dir);
  }
};

TEST_F(MemoryEstimateCalibration, TinyModel) {
  Check({"tiny",
         model::TinyConfig(),
         {{"lora", {{"r", 8}}},
          {"target_modules", {"q_proj", "v_proj"}},
          {"batch_size", 8},
          {"max_seq_len", 128}},
         64,
         400});
}

// About 20M parameters: activations (attention probabilities above all) outweigh the runtime
// allowance.
model::ModelConfig MidConfig() {
  model::ModelConfig c = model::TinyConfig();
  c.vocab_size = 8192;
  c.hidden_size = 512;
  c.intermediate_size = 1408;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  c.bos_token_id = 8189;
  c.eos_token_id = 8190;
  c.pad_token_id = 8191;
  return c;
}

TEST_F(MemoryEstimateCalibration, LargerGeneratedModel) {
  Check({"mid",
         MidConfig(),
         {{"lora", {{"r", 16}}},
          {"target_modules",
           {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
          {"batch_size", 8},
          {"max_seq_len", 512}},
         32,
         3000});
}

// DoRA keeps more per module, the token gate its delta; only the upper layers are adapted.
TEST_F(MemoryEstimateCalibration, LargerGeneratedModelDoraWithGate) {
  Check({"mid_dora_gate",
         MidConfig(),
         {{"method", "DORA"},
          {"lora", {{"r", 8}}},
          {"token_gate", {{"enabled", true}}},
          {"target_modules", {"q_proj", "v_proj", "o_proj", "down_proj"}},
          {"layers_to_transform", {2, 3}},
          {"batch_size", 4},
          {"max_seq_len", 512}},
         16,
         3000});
}

}  // namespace
}  // namespace peftd
