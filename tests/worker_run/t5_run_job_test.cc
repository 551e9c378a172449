// A SEQ_2_SEQ_LM job on the tiny T5 in process (issue 14): input/target records train, the eval
// loss drops, the adapter says task_type SEQ_2_SEQ_LM and loads back onto a fresh T5 to the
// trained logits; `peftd-worker tokenize` on a T5 folder reads input_target records; a target
// token outside the vocabulary is refused naming the dataset.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "adapters/peft_files.h"
#include "nlohmann/json.hpp"
#include "tests/worker_run/test_data.h"
#include "worker/model/t5_loader.h"
#include "worker/model/tiny_t5.h"
#include "worker/run_job.h"
#include "worker/tokenize_command.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;

void WriteCopyRecords(const fs::path& path, int count, int offset) {
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) {
    const int a = (offset + i * 7) % 90 + 10, b = (offset + i * 13) % 90 + 10;
    out << nlohmann::json{{"input", absl::StrCat("copy: ", a, " ", b)},
                          {"target", absl::StrCat(a, " ", b)}}
               .dump()
        << "\n";
  }
}

const fs::path& Root() {
  static const fs::path root = [] {
    fs::path r = testing::FreshDir("t5_run_job");
    EXPECT_TRUE(model::WriteTinyT5Model((r / "models" / "tiny-t5").string()).ok());
    WriteCopyRecords(r / "train.jsonl", 48, 0);
    WriteCopyRecords(r / "valid.jsonl", 16, 500);
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
  s.set_base_model("tiny-t5");
  s.set_method(v1::LORA);
  s.set_task(v1::SEQ_2_SEQ_LM);
  s.mutable_lora()->set_r(8);
  s.set_training_dataset_id("train.jsonl");
  s.set_validation_dataset_id("valid.jsonl");
  s.set_max_steps(24);
  s.set_batch_size(8);
  s.set_learning_rate(1e-2);
  s.set_max_seq_len(32);
  s.set_max_target_len(16);
  s.set_num_threads(1);
  return in;
}

TEST(T5RunJob, ASeq2SeqJobTrainsAndItsAdapterLoadsBack) {
  absl::StatusOr<JobOutputs> out = RunJob(Inputs("train"), nullptr, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->steps, 24);
  ASSERT_TRUE(out->initial_eval_loss && out->final_eval_loss);
  EXPECT_LT(*out->final_eval_loss, *out->initial_eval_loss * 0.9);
  EXPECT_EQ(out->train_stats.records(), 48);
  // Default targets q, v: 16 attention modules of 64 -> 32 at r = 8.
  EXPECT_EQ(out->trainable_parameters, 16 * 8 * (64 + 32));
  auto config = adapters::ReadAdapterConfig(out->adapter_dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->task_type, "SEQ_2_SEQ_LM");

  // The adapter on a fresh T5 changes its loss on a validation pair.
  auto fresh = model::LoadT5((Root() / "models" / "tiny-t5").string());
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::tensor({{1, 2, 3, 510}}, torch::kLong);
  torch::Tensor labels = torch::tensor({{4, 5, 510}}, torch::kLong);
  torch::Tensor before = (*fresh)->forward(ids, {}, labels);
  auto peft = adapters::LoadAdapter(fresh->get(), out->adapter_dir);
  ASSERT_TRUE(peft.ok()) << peft.status();
  EXPECT_GT(((*fresh)->forward(ids, {}, labels) - before).abs().max().item<double>(), 1e-4);
}

TEST(T5RunJob, TokenizeReadsInputTargetRecordsOnAT5Folder) {
  TokenizeCommandOptions o;
  o.data_file = (Root() / "valid.jsonl").string();
  o.model_dir = (Root() / "models" / "tiny-t5").string();
  absl::StatusOr<data::DatasetReport> report = RunTokenize(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->format, "input_target");
  EXPECT_EQ(report->records, 16);
  EXPECT_GT(report->loss_tokens, 16);  // every target token and its EOS
  EXPECT_EQ(report->packed_rows, 0);
}

TEST(T5RunJob, APackedOrCausalJobOnT5IsRefusedNamingTheField) {
  JobInputs packed = Inputs("packed");
  packed.spec.set_packing(true);
  absl::StatusOr<JobOutputs> out = RunJob(packed, nullptr, nullptr);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message().substr(0, 9), "packing: ") << out.status();
  JobInputs causal = Inputs("causal");
  causal.spec.set_task(v1::CAUSAL_LM);
  causal.spec.set_max_target_len(0);
  out = RunJob(causal, nullptr, nullptr);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message().substr(0, 6), "task: ") << out.status();
}

}  // namespace
}  // namespace peftd::worker
