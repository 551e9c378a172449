// `peftd-worker train` and `peftd-worker eval` as a user runs them, on the generated tiny model
// with datasets the test writes: the JSON log, the adapter folder (PEFT key names and shapes),
// eval loss going down, kill -9 after a checkpoint then --resume reproducing the uninterrupted
// per-step losses exactly, the logits dump against the in-process forward, classification.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "adapters/peft_files.h"
#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "tests/worker_run/test_data.h"
#include "worker/model/hf_loader.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::FreshDir;

const std::string kWorker = std::string(PEFTD_BINARY_DIR) + "/worker/peftd-worker";

// Starts peftd-worker with `args`, stdout and stderr to files beside `log_prefix`.
pid_t Spawn(const std::vector<std::string>& args, const fs::path& log_prefix) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int out =
        open((log_prefix.string() + ".stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err =
        open((log_prefix.string() + ".stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(kWorker.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(kWorker.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs to the end; returns the exit code, with stderr in `err`.
int RunWorker(const std::vector<std::string>& args, const fs::path& log_prefix, std::string* err) {
  const int rc = WaitExit(Spawn(args, log_prefix));
  if (err) *err = Slurp(log_prefix.string() + ".stderr") + Slurp(log_prefix.string() + ".stdout");
  return rc;
}

std::vector<json> ReadLog(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

std::vector<json> OfType(const std::vector<json>& log, const std::string& type) {
  std::vector<json> out;
  for (const auto& j : log)
    if (j["type"] == type) out.push_back(j);
  return out;
}

std::map<int64_t, double> StepLosses(const std::vector<json>& log) {
  std::map<int64_t, double> out;
  for (const auto& j : OfType(log, "step")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  return out;
}

// The tiny model, datasets and job files, shared by the tests of this binary.
class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(FreshDir("train_cli"));
    std::string err;
    ASSERT_EQ(RunWorker({"make-tiny-model", (*dir_ / "tiny").string()}, *dir_ / "make", &err), 0)
        << err;
    testing::WriteAlphabetText(*dir_ / "train.jsonl", 48, 1);
    testing::WriteAlphabetText(*dir_ / "valid.jsonl", 16, 2);
    testing::WriteEndingLabels(*dir_ / "cls_train.jsonl", 64, 1);
    testing::WriteEndingLabels(*dir_ / "cls_valid.jsonl", 32, 2);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  // A LoRA job on q, v and down_proj; `extra` is merged over it.
  static fs::path WriteJob(const std::string& name, const json& extra = json::object()) {
    json job = {{"base_model", "tiny"},
                {"method", "LORA"},
                {"lora", {{"r", 4}, {"alpha", 8}}},
                {"target_modules", {"q_proj", "v_proj", "down_proj"}},
                {"training_dataset_id", "train.jsonl"},
                {"validation_dataset_id", "valid.jsonl"},
                {"max_steps", 40},
                {"batch_size", 8},
                {"learning_rate", 2e-2},
                {"warmup_steps", 2},
                {"eval_interval_steps", 20},
                {"checkpoint_interval_steps", 8},
                {"num_threads", 1}};
    job.merge_patch(extra);
    const fs::path p = *dir_ / (name + ".json");
    testing::WriteFile(p, job.dump(2));
    return p;
  }

  static fs::path* dir_;
};
fs::path* TrainCli::dir_ = nullptr;

TEST_F(TrainCli, LoraWritesLogAndPeftAdapter) {
  const fs::path job = WriteJob("lora");
  const fs::path out = *dir_ / "lora-out";
  std::string err;
  ASSERT_EQ(RunWorker({"train", job.string(), "--out", out.string()}, *dir_ / "lora", &err), 0)
      << err;
  EXPECT_NE(err.find("adapter: " + (out / "adapter").string()), std::string::npos) << err;
  EXPECT_NE(err.find("step 40/40"), std::string::npos) << err;  // the progress line

  const auto log = ReadLog(out / "train_log.jsonl");
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.front()["type"], "start");
  EXPECT_EQ(log.back()["type"], "summary");
  EXPECT_EQ(StepLosses(log).size(), 40u);
  for (const auto& s : OfType(log, "step")) {
    for (const char* k : {"total_steps", "learning_rate", "grad_norm", "tokens_per_second",
                          "eta_seconds", "tokens_seen", "epoch", "time"}) {
      EXPECT_TRUE(s.contains(k)) << k << " in " << s;
    }
  }
  const auto evals = OfType(log, "eval");
  ASSERT_EQ(evals.size(), 3u);  // before training, at 20, at 40
  EXPECT_EQ(evals.front()["step"], 0);
  // Threshold: 40 steps on the alphabet task lower eval loss by at least 10% (13% measured).
  EXPECT_LT(evals.back()["loss"].get<double>(), 0.9 * evals.front()["loss"].get<double>());
  std::vector<int64_t> ckpts;
  for (const auto& c : OfType(log, "checkpoint")) ckpts.push_back(c["step"]);
  EXPECT_EQ(ckpts, (std::vector<int64_t>{8, 16, 24, 32}));
  std::vector<std::string> phases;
  for (const auto& p : OfType(log, "phase")) phases.push_back(p["phase"]);
  EXPECT_EQ(phases.front(), "loading_model");
  EXPECT_EQ(phases.back(), "exporting");
  EXPECT_NE(std::find(phases.begin(), phases.end(), "checkpointing"), phases.end());
  EXPECT_NE(std::find(phases.begin(), phases.end(), "evaluating"), phases.end());
  const json summary = log.back();
  EXPECT_EQ(summary["steps"], 40);
  EXPECT_EQ(summary["train_records"], 48);
  EXPECT_LT(summary["final_eval_loss"].get<double>(), summary["initial_eval_loss"].get<double>());

  // PEFT names and shapes: 4 layers × (q, v, down), A (r, in), B (out, r).
  auto tensors = adapters::LoadTensors((out / "adapter" / "adapter_model.safetensors").string());
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_EQ(tensors->size(), 24u);
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
  ASSERT_TRUE(tensors->count(q + "lora_A.weight"));
  EXPECT_EQ(tensors->at(q + "lora_A.weight").sizes(), (c10::IntArrayRef{4, 64}));
  EXPECT_EQ(tensors->at(q + "lora_B.weight").sizes(), (c10::IntArrayRef{64, 4}));
  const std::string v = "base_model.model.model.layers.3.self_attn.v_proj.";
  EXPECT_EQ(tensors->at(v + "lora_B.weight").sizes(), (c10::IntArrayRef{32, 4}));  // 2 kv heads
  const std::string d = "base_model.model.model.layers.2.mlp.down_proj.";
  EXPECT_EQ(tensors->at(d + "lora_A.weight").sizes(), (c10::IntArrayRef{4, 176}));
  json config = json::parse(Slurp(out / "adapter" / "adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  EXPECT_TRUE(fs::exists(out / "job.json"));

  // Training into the same folder again without --resume is refused, naming the way out.
  ASSERT_EQ(RunWorker({"train", job.string(), "--out", out.string()}, *dir_ / "lora_again", &err),
            1);
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
}

TEST_F(TrainCli, GatedLoraReportsSparsityAndTau) {
  const fs::path job =
      WriteJob("lora_s", {{"token_gate", {{"enabled", true}, {"s", 1e-3}, {"lambda", 1e-4}}}});
  const fs::path out = *dir_ / "lora_s-out";
  std::string err;
  ASSERT_EQ(RunWorker({"train", job.string(), "--out", out.string()}, *dir_ / "lora_s", &err), 0)
      << err;
  EXPECT_NE(err.find("sparsity"), std::string::npos) << err;
  const auto log = ReadLog(out / "train_log.jsonl");
  for (const auto& s : OfType(log, "step")) {
    ASSERT_TRUE(s.contains("gate_sparsity")) << s;
    EXPECT_EQ(s["gate_tau_by_module"].size(), 12u);
    EXPECT_GE(s["gate_sparsity"].get<double>(), 0.0);
    EXPECT_LE(s["gate_sparsity"].get<double>(), 1.0);
  }
  const auto evals = OfType(log, "eval");
  ASSERT_FALSE(evals.empty());
  EXPECT_TRUE(evals.back().contains("gate_sparsity"));
  // Threshold: the gate lets the adapter learn: eval loss drops by at least 5%.
  EXPECT_LT(evals.back()["loss"].get<double>(), 0.95 * evals.front()["loss"].get<double>());
  json config = json::parse(Slurp(out / "adapter" / "adapter_config.json"));
  ASSERT_TRUE(config.contains("token_gate"));
  EXPECT_EQ(config["token_gate"]["tau"].size(), 12u);
  EXPECT_TRUE(config["token_gate"]["tau"].contains("model.layers.0.self_attn.q_proj"));
  auto tensors = adapters::LoadTensors((out / "adapter" / "adapter_model.safetensors").string());
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(tensors->size(), 24u);  // the gate adds τ to the config, no tensor
}

// Kills the run with SIGKILL after its first checkpoint. The JSON log is a pipe whose capacity is
// one page: the run blocks on its log until the test reads it, so it cannot get far past the
// checkpoint (nor finish) before the kill, however fast the machine.
TEST_F(TrainCli, KillAfterCheckpointThenResumeReproducesTheLosses) {
  const json extra = {
      {"max_steps", 40}, {"eval_interval_steps", 0}, {"checkpoint_interval_steps", 4}};
  const fs::path job = WriteJob("resume", extra);
  std::string err;
  // Uninterrupted reference.
  const fs::path ref = *dir_ / "resume-ref";
  ASSERT_EQ(RunWorker({"train", job.string(), "--out", ref.string()}, *dir_ / "ref", &err), 0)
      << err;
  const auto ref_losses = StepLosses(ReadLog(ref / "train_log.jsonl"));
  ASSERT_EQ(ref_losses.size(), 40u);

  const fs::path out = *dir_ / "resume-out";
  const fs::path fifo = *dir_ / "resume.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int fd = open(fifo.c_str(), O_RDWR);  // holds both ends: neither side blocks on open
  ASSERT_GE(fd, 0);
  ASSERT_GT(fcntl(fd, F_SETPIPE_SZ, 4096), 0);
  const pid_t pid =
      Spawn({"train", job.string(), "--out", out.string(), "--json-log", fifo.string()},
            *dir_ / "killed");
  std::vector<json> killed_log;
  std::string pending;
  bool killed = false;
  char buf[512];
  while (!killed) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      killed_log.push_back(json::parse(pending.substr(0, nl)));
      pending.erase(0, nl + 1);
      ASSERT_NE(killed_log.back()["type"], "summary") << "the run finished before the kill";
      if (killed_log.back()["type"] == "checkpoint") {
        kill(pid, SIGKILL);
        killed = true;
        break;
      }
    }
  }
  EXPECT_EQ(WaitExit(pid), 128 + SIGKILL);
  close(fd);
  EXPECT_FALSE(fs::exists(out / "adapter"));
  const auto before_kill = StepLosses(killed_log);
  ASSERT_FALSE(before_kill.empty());
  for (const auto& [step, loss] : before_kill) EXPECT_EQ(loss, ref_losses.at(step)) << step;

  ASSERT_EQ(RunWorker({"train", job.string(), "--out", out.string(), "--resume", "--json-log",
                       (*dir_ / "resumed.jsonl").string()},
                      *dir_ / "resumed", &err),
            0)
      << err;
  const auto resumed_log = ReadLog(*dir_ / "resumed.jsonl");
  ASSERT_FALSE(resumed_log.empty());
  const int64_t from = resumed_log.front()["resume_step"];
  EXPECT_GE(from, 4);
  EXPECT_LT(from, 40);
  const auto resumed = StepLosses(resumed_log);
  ASSERT_EQ(static_cast<int64_t>(resumed.size()), 40 - from);
  EXPECT_EQ(resumed.begin()->first, from + 1);
  // Exactly equal, not close: the resumed run is the same computation (CPU, one thread).
  for (const auto& [step, loss] : resumed) EXPECT_EQ(loss, ref_losses.at(step)) << step;
  auto a = adapters::LoadTensors((ref / "adapter" / "adapter_model.safetensors").string());
  auto b = adapters::LoadTensors((out / "adapter" / "adapter_model.safetensors").string());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  for (const auto& [k, t] : *a) EXPECT_TRUE(torch::equal(t, b->at(k))) << k;
}

TEST_F(TrainCli, EvalDumpsTheLogitsOfTheAdaptedModel) {
  const fs::path job = WriteJob("for_eval", {{"max_steps", 6}, {"eval_interval_steps", 0}});
  const fs::path out = *dir_ / "for_eval-out";
  std::string err;
  ASSERT_EQ(RunWorker({"train", job.string(), "--out", out.string()}, *dir_ / "for_eval", &err), 0)
      << err;
  const fs::path ids = *dir_ / "ids.json";
  testing::WriteFile(ids, "[[1, 2, 3, 4, 5, 6, 7], [9, 8, 7], [100, 200, 300, 400, 500]]");
  const fs::path dump = *dir_ / "logits.safetensors";
  ASSERT_EQ(RunWorker({"eval", "--model", (*dir_ / "tiny").string(), "--adapter",
                       (out / "adapter").string(), "--inputs", ids.string(), "--dump-logits",
                       dump.string(), "--loss"},
                      *dir_ / "eval", &err),
            0)
      << err;
  EXPECT_NE(err.find("loss "), std::string::npos) << err;
  auto dumped = adapters::LoadTensors(dump.string());
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  const torch::Tensor logits = dumped->at("logits");
  const torch::Tensor mask = dumped->at("attention_mask");
  EXPECT_EQ(logits.sizes(), (c10::IntArrayRef{3, 7, 512}));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  EXPECT_EQ(mask.sum().item<int64_t>(), 15);
  EXPECT_EQ(mask[1][3].item<int64_t>(), 0);

  // The same rows one by one in process, adapter applied: equal on every real position.
  auto model = model::LoadLlama((*dir_ / "tiny").string());
  ASSERT_TRUE(model.ok());
  auto peft = adapters::LoadAdapter(model->get(), (out / "adapter").string());
  ASSERT_TRUE(peft.ok()) << peft.status();
  torch::NoGradGuard no_grad;
  (*model)->eval();
  const std::vector<std::vector<int64_t>> rows = {
      {1, 2, 3, 4, 5, 6, 7}, {9, 8, 7}, {100, 200, 300, 400, 500}};
  for (size_t b = 0; b < rows.size(); ++b) {
    const int64_t t = static_cast<int64_t>(rows[b].size());
    torch::Tensor x = torch::tensor(rows[b], torch::kLong).view({1, t});
    torch::Tensor expected = (*model)->forward(x, torch::ones_like(x))[0];
    EXPECT_TRUE(torch::allclose(logits[b].narrow(0, 0, t), expected, 1e-5, 1e-5)) << "row " << b;
  }
}

TEST_F(TrainCli, ClassificationReportsAccuracy) {
  const fs::path job = WriteJob("cls", {{"task", "SEQ_CLS"},
                                        {"num_labels", 2},
                                        {"training_dataset_id", "cls_train.jsonl"},
                                        {"validation_dataset_id", "cls_valid.jsonl"},
                                        {"max_steps", 16},
                                        {"learning_rate", 3e-2},
                                        {"eval_interval_steps", 8}});
  const fs::path out = *dir_ / "cls-out";
  std::string err;
  ASSERT_EQ(RunWorker({"train", job.string(), "--out", out.string()}, *dir_ / "cls", &err), 0)
      << err;
  EXPECT_NE(err.find("accuracy"), std::string::npos) << err;
  const auto log = ReadLog(out / "train_log.jsonl");
  const auto evals = OfType(log, "eval");
  ASSERT_FALSE(evals.empty());
  for (const auto& e : evals) ASSERT_TRUE(e.contains("accuracy")) << e;
  // Threshold: the label is the last token; a trained score head gets nearly all of them.
  EXPECT_GE(log.back()["final_eval_accuracy"].get<double>(), 0.9) << log.back();
}

TEST_F(TrainCli, BadJobFilesNameTheField) {
  std::string err;
  const fs::path typo = *dir_ / "typo.json";
  testing::WriteFile(typo, R"({"base_model": "tiny", "method": "LORA", "lerning_rate": 0.1,
                              "training_dataset_id": "train.jsonl"})");
  EXPECT_EQ(RunWorker({"train", typo.string(), "--out", (*dir_ / "typo-out").string()},
                      *dir_ / "typo", &err),
            1);
  EXPECT_NE(err.find("lerning_rate"), std::string::npos) << err;

  const fs::path bad_r = WriteJob("bad_r", {{"lora", {{"r", 0}, {"alpha", -1}}}});
  EXPECT_EQ(RunWorker({"train", bad_r.string(), "--out", (*dir_ / "bad_r-out").string()},
                      *dir_ / "bad_r", &err),
            1);
  EXPECT_NE(err.find("lora.alpha"), std::string::npos) << err;

  const fs::path bad_line = *dir_ / "bad_line.jsonl";
  testing::WriteFile(bad_line, "{\"text\": \"abcdef\"}\nnot json\n");
  const fs::path bad_data = WriteJob("bad_data", {{"training_dataset_id", "bad_line.jsonl"}});
  EXPECT_EQ(RunWorker({"train", bad_data.string(), "--out", (*dir_ / "bad_data-out").string()},
                      *dir_ / "bad_data", &err),
            1);
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
}

}  // namespace
}  // namespace peftd
