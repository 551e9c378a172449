// Admission of SEQ_2_SEQ_LM jobs (issue 14) on fake sources: a T5 model with input_target
// datasets is admitted with PEFT's default targets (q, v) and max_target_len 128; input_target
// records on a causal-LM job, text records on a seq2seq job, CAUSAL_LM on T5 and SEQ_2_SEQ_LM on
// a LLaMA model are refused naming the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "server/job_admission.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kTinyT5[] = R"({"architectures": ["T5ForConditionalGeneration"],
  "model_type": "t5", "vocab_size": 512, "d_model": 64, "d_kv": 8, "d_ff": 128, "num_layers": 2,
  "num_decoder_layers": 3, "num_heads": 4, "feed_forward_proj": "gated-gelu",
  "tie_word_embeddings": false})";

class T5Sources : public AdmissionSources {
 public:
  T5Sources() {
    models["tiny-t5"] = *model::ParseModelConfig(kTinyT5);
    models["tiny"] = *model::ParseModelConfig(peftd::testing::kTestModelConfigJson);
    for (const char* format : {"text", "input_target"}) {
      v1::Dataset d;
      d.set_id(absl::StrCat("ds-", format));
      d.set_format(format);
      d.set_size_bytes(1000);
      datasets[d.id()] = d;
    }
  }
  absl::StatusOr<model::ModelConfig> ReadModelConfig(const std::string& base_model) override {
    auto it = models.find(base_model);
    if (it == models.end()) return absl::NotFoundError(absl::StrCat("base_model: no ", base_model));
    return it->second;
  }
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override {
    auto it = datasets.find(id);
    if (it == datasets.end()) return absl::NotFoundError("none");
    return it->second;
  }
  std::optional<WorkerMemory> LargestWorkerMemory() override { return std::nullopt; }

  std::map<std::string, model::ModelConfig> models;
  std::map<std::string, v1::Dataset> datasets;
};

v1::CreateJobRequest Seq2Seq() {
  v1::CreateJobRequest r;
  r.mutable_spec()->set_base_model("tiny-t5");
  r.mutable_spec()->set_method(v1::LORA);
  r.mutable_spec()->set_task(v1::SEQ_2_SEQ_LM);
  r.mutable_spec()->set_training_dataset_id("ds-input_target");
  r.mutable_spec()->set_validation_dataset_id("ds-input_target");
  return r;
}

TEST(T5Admission, ASeq2SeqJobOnT5GetsPeftsDefaults) {
  T5Sources sources;
  auto spec = AdmitJob(Seq2Seq(), sources);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->target_modules_size(), 2);
  EXPECT_EQ(spec->target_modules(0), "q");
  EXPECT_EQ(spec->target_modules(1), "v");
  EXPECT_EQ(spec->max_target_len(), 128);
  EXPECT_FALSE(spec->packing());
}

TEST(T5Admission, MismatchedTasksAndRecordsAreRefusedNamingTheField) {
  T5Sources sources;
  v1::CreateJobRequest text = Seq2Seq();
  text.mutable_spec()->set_validation_dataset_id("ds-text");
  auto refused = AdmitJob(text, sources);
  EXPECT_THAT(std::string(refused.status().message()),
              StartsWith("validation_dataset_id: dataset ds-text holds text records, which task "
                         "SEQ_2_SEQ_LM cannot train on"));

  v1::CreateJobRequest causal = Seq2Seq();
  causal.mutable_spec()->set_task(v1::CAUSAL_LM);
  refused = AdmitJob(causal, sources);
  EXPECT_THAT(std::string(refused.status().message()), StartsWith("task: "));

  v1::CreateJobRequest on_llama;
  on_llama.mutable_spec()->set_base_model("tiny");
  on_llama.mutable_spec()->set_method(v1::LORA);
  on_llama.mutable_spec()->set_training_dataset_id("ds-input_target");
  refused = AdmitJob(on_llama, sources);
  EXPECT_THAT(std::string(refused.status().message()),
              StartsWith("training_dataset_id: dataset ds-input_target holds input_target "
                         "records, which task CAUSAL_LM cannot train on"));
  on_llama.mutable_spec()->set_task(v1::SEQ_2_SEQ_LM);
  refused = AdmitJob(on_llama, sources);
  EXPECT_THAT(std::string(refused.status().message()),
              AllOf(StartsWith("task: "), HasSubstr("encoder-decoder")));
}

}  // namespace
}  // namespace peftd::server
