// The job runner in process on the generated tiny model: where base_model may resolve, what a
// finished job leaves (adapter, merged model, stats), and the errors a user sees.
#include "worker/run_job.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "adapters/peft_files.h"
#include "adapters/safetensors_torch.h"
#include "nlohmann/json.hpp"
#include "tests/worker_run/test_data.h"
#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
using testing::FreshDir;

struct Recorder : train::ProgressSink {
  void OnPhase(train::Phase p) override { phases.push_back(p); }
  void OnEval(const train::EvalMetrics& m) override { evals.push_back(m); }
  void OnLog(train::LogLevel level, const std::string& m) override { logs.push_back(m); }
  void OnCheckpoint(int64_t step, const std::string& dir) override { checkpoints.push_back(step); }
  std::vector<train::Phase> phases;
  std::vector<train::EvalMetrics> evals;
  std::vector<std::string> logs;
  std::vector<int64_t> checkpoints;
};

// The tiny model under a model root, and small datasets, written once for the whole test.
const fs::path& Root() {
  static const fs::path root = [] {
    fs::path r = FreshDir("run_job");
    EXPECT_TRUE(model::WriteTinyModel((r / "models" / "tiny").string()).ok());
    testing::WriteAlphabetText(r / "train.jsonl", 48, 1);
    testing::WriteAlphabetText(r / "valid.jsonl", 16, 2);
    testing::WriteEndingLabels(r / "cls_train.jsonl", 64, 1);
    testing::WriteEndingLabels(r / "cls_valid.jsonl", 32, 2);
    return r;
  }();
  return root;
}

JobInputs Inputs(const std::string& name) {
  JobInputs in;
  in.job_id = name;
  in.model_root = (Root() / "models").string();
  in.training_data_path = (Root() / "train.jsonl").string();
  in.validation_data_path = (Root() / "valid.jsonl").string();
  in.work_dir = (Root() / "work" / name).string();
  v1::JobSpec& s = in.spec;
  s.set_base_model("tiny");
  s.set_method(v1::LORA);
  s.mutable_lora()->set_r(4);
  s.add_target_modules("q_proj");
  s.add_target_modules("v_proj");
  s.add_target_modules("down_proj");
  s.set_training_dataset_id("train.jsonl");
  s.set_validation_dataset_id("valid.jsonl");
  s.set_max_steps(40);
  s.set_batch_size(8);
  s.set_learning_rate(2e-2);
  s.set_checkpoint_interval_steps(10);
  s.set_num_threads(1);
  return in;
}

TEST(ResolveBaseModel, StaysInsideTheModelRoot) {
  const fs::path root = FreshDir("resolve");
  ASSERT_TRUE(model::WriteTinyModel((root / "models" / "m").string()).ok());
  ASSERT_TRUE(model::WriteTinyModel((root / "outside").string()).ok());
  const std::string models = (root / "models").string();

  absl::StatusOr<std::string> ok = ResolveBaseModel(models, "m");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(fs::path(*ok), fs::canonical(root / "models" / "m"));
  EXPECT_TRUE(ResolveBaseModel(models, (root / "models" / "m").string()).ok());

  for (const std::string& escape :
       {std::string("../outside"), (root / "outside").string(), std::string("m/../../outside")}) {
    absl::StatusOr<std::string> bad = ResolveBaseModel(models, escape);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << escape;
    EXPECT_NE(bad.status().message().find("outside the model root"), std::string::npos)
        << bad.status();
  }
  absl::StatusOr<std::string> missing = ResolveBaseModel(models, "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("models there: m"), std::string::npos)
      << missing.status();
  fs::create_directory_symlink(root / "outside", root / "models" / "link");
  absl::StatusOr<std::string> linked = ResolveBaseModel(models, "link");
  EXPECT_EQ(linked.status().code(), absl::StatusCode::kInvalidArgument) << linked.status();
}

TEST(ResolveBaseModel, WritesTheBuiltinModelOnFirstUse) {
  const fs::path root = FreshDir("builtin");
  absl::StatusOr<std::string> dir = ResolveBaseModel(root.string(), "tiny-llama");
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_TRUE(fs::exists(fs::path(*dir) / "model.safetensors"));
  EXPECT_TRUE(fs::exists(fs::path(*dir) / "tokenizer.json"));
}

TEST(NewestCheckpoint, SkipsHalfWrittenFolders) {
  const fs::path root = FreshDir("newest");
  EXPECT_FALSE(NewestCheckpoint(root.string()).has_value());
  for (const char* name : {"step-00000005", "step-00000010", "step-00000015.tmp"}) {
    fs::create_directories(root / name);
    testing::WriteFile(root / name / "checkpoint.safetensors", "x");
  }
  fs::create_directories(root / "step-00000020");  // no checkpoint file yet
  ASSERT_TRUE(NewestCheckpoint(root.string()).has_value());
  EXPECT_EQ(CheckpointStep(*NewestCheckpoint(root.string())), 10);
}

TEST(RunJob, TrainsExportsAndReports) {
  JobInputs in = Inputs("lora");
  in.spec.set_export_merged(true);
  Recorder sink;
  std::atomic<bool> cancelled{false};
  absl::StatusOr<JobOutputs> out = RunJob(in, &sink, &cancelled);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->steps, 40);
  EXPECT_EQ(out->train_stats.records(), 48);
  EXPECT_GT(out->train_stats.tokens(), 48 * 4);
  EXPECT_EQ(out->validation_stats.records(), 16);
  ASSERT_TRUE(out->initial_eval_loss && out->final_eval_loss);
  // Threshold: 40 steps lower eval loss by at least 10% (13% measured).
  EXPECT_LT(*out->final_eval_loss, *out->initial_eval_loss * 0.9);
  EXPECT_GT(out->trainable_parameters, 0);
  EXPECT_GT(out->total_parameters, out->trainable_parameters);
  EXPECT_EQ(sink.phases.front(), train::Phase::kLoadingModel);
  EXPECT_EQ(sink.phases.back(), train::Phase::kExporting);
  EXPECT_EQ(sink.checkpoints, (std::vector<int64_t>{10, 20, 30}));
  EXPECT_TRUE(fs::exists(fs::path(out->adapter_dir) / "adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(in.work_dir) / "adapter.tmp"));

  // The merged folder is a complete HF model whose logits are the adapted model's.
  ASSERT_FALSE(out->merged_dir.empty());
  for (const char* f :
       {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}) {
    EXPECT_TRUE(fs::exists(fs::path(out->merged_dir) / f)) << f;
  }
  const std::string base = (Root() / "models" / "tiny").string();
  auto adapted = model::LoadLlama(base);
  ASSERT_TRUE(adapted.ok());
  auto peft = adapters::LoadAdapter(adapted->get(), out->adapter_dir);
  ASSERT_TRUE(peft.ok()) << peft.status();
  auto merged = model::LoadLlama(out->merged_dir);
  ASSERT_TRUE(merged.ok()) << merged.status();
  torch::NoGradGuard no_grad;
  (*adapted)->eval();
  (*merged)->eval();
  torch::Tensor ids = torch::arange(1, 21, torch::kLong).view({2, 10});
  torch::Tensor mask = torch::ones_like(ids);
  EXPECT_TRUE(
      torch::allclose((*adapted)->forward(ids, mask), (*merged)->forward(ids, mask), 1e-4, 1e-4));
}

TEST(RunJob, ClassificationReportsAccuracyAndSavesTheHead) {
  JobInputs in = Inputs("cls");
  in.training_data_path = (Root() / "cls_train.jsonl").string();
  in.validation_data_path = (Root() / "cls_valid.jsonl").string();
  in.spec.set_task(v1::SEQ_CLS);
  in.spec.set_num_labels(2);
  in.spec.set_max_steps(16);
  in.spec.set_learning_rate(3e-2);
  in.spec.set_export_merged(true);
  Recorder sink;
  absl::StatusOr<JobOutputs> out = RunJob(in, &sink, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(out->final_eval_accuracy.has_value());
  // The label is the last token: with the score head trained the task is easy.
  EXPECT_GE(*out->final_eval_accuracy, 0.9);
  auto tensors = adapters::LoadTensors(out->adapter_dir + "/adapter_model.safetensors");
  ASSERT_TRUE(tensors.ok());
  ASSERT_TRUE(tensors->count("base_model.model.score.weight"));
  EXPECT_EQ(tensors->at("base_model.model.score.weight").sizes(), (c10::IntArrayRef{2, 64}));
  auto config = adapters::ReadAdapterConfig(out->adapter_dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->task_type, "SEQ_CLS");
  EXPECT_EQ(config->modules_to_save, (std::vector<std::string>{"score"}));
  // The merged classifier loads as a *ForSequenceClassification model.
  auto merged = model::LoadLlama(out->merged_dir);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE((*merged)->config().sequence_classification);
  EXPECT_EQ((*merged)->config().num_labels, 2);
}

TEST(RunJob, ADatasetErrorNamesTheLine) {
  JobInputs in = Inputs("bad_data");
  const fs::path bad = Root() / "bad.jsonl";
  testing::WriteFile(bad, "{\"text\": \"abc\"}\n{\"text\": \"def\"}\n{\"txt\": \"oops\"}\n");
  in.training_data_path = bad.string();
  absl::StatusOr<JobOutputs> out = RunJob(in, nullptr, nullptr);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  EXPECT_NE(out.status().message().find("training_dataset_id"), std::string::npos);
  EXPECT_NE(out.status().message().find("line 3"), std::string::npos) << out.status();
}

TEST(RunJob, SpecErrorsNameTheField) {
  JobInputs in = Inputs("bad_spec");
  in.spec.mutable_lora()->set_r(-1);
  absl::StatusOr<JobOutputs> out = RunJob(in, nullptr, nullptr);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message().rfind("lora.r", 0), 0u) << out.status();

  in = Inputs("bad_target");
  in.spec.clear_target_modules();
  in.spec.add_target_modules("no_such_proj");
  out = RunJob(in, nullptr, nullptr);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  EXPECT_NE(out.status().message().find("no_such_proj"), std::string::npos) << out.status();
}

// HUT's merge gives every adapted layer a bias (b = γ⊙b0 + β), and LLaMA's projections have
// none: the merged config.json sets attention_bias and mlp_bias, the other projections of those
// groups get zero biases, and the folder loads as the adapted model.
TEST(RunJob, HutMergedExportDeclaresItsBiasesAndGivesTheAdaptedLogits) {
  JobInputs in = Inputs("hut");
  in.spec.set_method(v1::HUT);
  in.spec.clear_lora();
  in.spec.set_max_steps(4);
  in.spec.set_learning_rate(5e-2);
  in.spec.set_export_merged(true);
  Recorder sink;
  absl::StatusOr<JobOutputs> out = RunJob(in, &sink, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_FALSE(out->merged_dir.empty());
  std::ifstream config_file(fs::path(out->merged_dir) / "config.json");
  const nlohmann::json config = nlohmann::json::parse(config_file);
  EXPECT_EQ(config["attention_bias"], true);  // q_proj, v_proj adapted
  EXPECT_EQ(config["mlp_bias"], true);        // down_proj adapted
  auto weights = adapters::LoadTensors(out->merged_dir + "/model.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->at("model.layers.0.self_attn.k_proj.bias").abs().sum().item<double>(), 0.0);
  EXPECT_EQ(weights->at("model.layers.0.mlp.up_proj.bias").abs().sum().item<double>(), 0.0);
  EXPECT_GT(weights->at("model.layers.0.self_attn.q_proj.bias").abs().sum().item<double>(), 0.0);

  const std::string base = (Root() / "models" / "tiny").string();
  auto adapted = model::LoadLlama(base);
  ASSERT_TRUE(adapted.ok());
  auto peft = adapters::LoadAdapter(adapted->get(), out->adapter_dir);
  ASSERT_TRUE(peft.ok()) << peft.status();
  auto merged = model::LoadLlama(out->merged_dir);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE((*merged)->config().o_proj_bias);
  torch::NoGradGuard no_grad;
  (*adapted)->eval();
  (*merged)->eval();
  torch::Tensor ids = torch::arange(1, 21, torch::kLong).view({2, 10});
  torch::Tensor mask = torch::ones_like(ids);
  torch::Tensor want = (*adapted)->forward(ids, mask);
  // The adapter moved the model: the comparison is not base against base.
  auto plain = model::LoadLlama(base);
  ASSERT_TRUE(plain.ok());
  (*plain)->eval();
  EXPECT_FALSE(torch::allclose((*plain)->forward(ids, mask), want, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose((*merged)->forward(ids, mask), want, 1e-4, 1e-4));
}

// Mistral's (and Qwen2's o_proj and MLP) biases are not declarable in their config.json.
TEST(RunJob, HutMergedExportOfAMistralBaseIsSkippedWithTheReason) {
  const fs::path dir = Root() / "models" / "tiny-mistral";
  if (!fs::exists(dir / "config.json")) {
    ASSERT_TRUE(model::WriteTinyModel(dir.string()).ok());
    std::ifstream in(dir / "config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config["architectures"] = {"MistralForCausalLM"};
    config["model_type"] = "mistral";
    std::ofstream(dir / "config.json") << config.dump(2);
  }
  JobInputs in = Inputs("hut_mistral");
  in.spec.set_base_model("tiny-mistral");
  in.spec.set_method(v1::HUT);
  in.spec.clear_lora();
  in.spec.set_max_steps(2);
  in.spec.set_export_merged(true);
  Recorder sink;
  absl::StatusOr<JobOutputs> out = RunJob(in, &sink, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->merged_dir.empty());
  bool warned = false;
  for (const auto& l : sink.logs) {
    warned =
        warned || (l.find("no merged model") != std::string::npos &&
                   l.find("MistralForCausalLM config.json cannot declare") != std::string::npos);
  }
  EXPECT_TRUE(warned);
}

TEST(RunJob, CancelledBeforeTheFirstStep) {
  JobInputs in = Inputs("cancel");
  std::atomic<bool> cancelled{true};
  absl::StatusOr<JobOutputs> out = RunJob(in, nullptr, &cancelled);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kCancelled) << out.status();
}

// Issue 12: the worker checks the job's memory estimate (common/memory_estimate.h) before it
// reads the data or allocates the model, and fails the job instead of exhausting the host.
TEST(RunJob, AJobOverTheMemoryLimitFailsBeforeAnythingIsLoaded) {
  JobInputs in = Inputs("memory_limit");
  Recorder sink;
  RunJobOptions options;
  options.memory_limit_bytes = int64_t{64} << 20;  // the runtime allowance alone is more
  absl::StatusOr<JobOutputs> out = RunJob(in, &sink, nullptr, options);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
  EXPECT_EQ(out.status().message().rfind("the job needs an estimated ", 0), 0u) << out.status();
  EXPECT_NE(out.status().message().find("more than this worker's memory limit "
                                        "(RunJobOptions.memory_limit_bytes) has: 0.1 GiB"),
            std::string::npos)
      << out.status();
  EXPECT_EQ(sink.phases, std::vector<train::Phase>{train::Phase::kLoadingModel});
  for (const auto& l : sink.logs) EXPECT_EQ(l.find("records"), std::string::npos) << l;
  EXPECT_FALSE(fs::exists(in.work_dir));

  // Against the host's real memory: ranges allow batch_size 65536 x max_seq_len 2^20, no host
  // holds their attention probabilities.
  in = Inputs("memory_host");
  in.spec.set_batch_size(65536);
  in.spec.set_max_seq_len(1 << 20);
  out = RunJob(in, nullptr, nullptr);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
  EXPECT_NE(out.status().message().find("more than this worker's host"), std::string::npos)
      << out.status();
}

// Issue 18 item 2: a list may mix names and "re:" entries; each stands on its own.
TEST(RunJob, MixedModuleListsAdaptWhatEachEntryMatches) {
  JobInputs in = Inputs("mixed");
  in.spec.clear_target_modules();
  in.spec.add_target_modules("q_proj");
  in.spec.add_target_modules(R"(re:model\.layers\.[01]\.mlp\.down_proj)");
  in.spec.set_max_steps(1);
  in.spec.clear_validation_dataset_id();
  in.validation_data_path.clear();
  Recorder sink;
  absl::StatusOr<JobOutputs> out = RunJob(in, &sink, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  bool said = false;  // 4 q_proj and 2 down_proj of the 4-layer tiny model
  for (const auto& l : sink.logs) said = said || l.find("lora on 6 modules") != std::string::npos;
  EXPECT_TRUE(said);
}

}  // namespace
}  // namespace peftd::worker
