// Admission of CreateJob (issue 12's table rows) on fake sources: each refusal's code and message,
// and which memory the estimate is checked against.
#include "server/job_admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/memory_estimate.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int64_t kGiB = int64_t{1} << 30;

class FakeSources : public AdmissionSources {
 public:
  FakeSources() {
    models["tiny"] = *model::ParseModelConfig(peftd::testing::kTestModelConfigJson);
    model::ModelConfig big = models["tiny"];
    big.vocab_size = 32000;
    big.hidden_size = 4096;
    big.intermediate_size = 11008;
    big.num_hidden_layers = 32;
    big.num_attention_heads = 32;
    big.num_key_value_heads = 32;
    big.head_dim = 128;
    models["llama-7b"] = big;
    v1::Dataset text;
    text.set_id("ds-text");
    text.set_format("text");
    text.set_size_bytes(1000);
    datasets["ds-text"] = text;
    v1::Dataset cls = text;
    cls.set_id("ds-cls");
    cls.set_format("classification");
    datasets["ds-cls"] = cls;
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
  std::optional<WorkerMemory> LargestWorkerMemory() override { return memory; }

  std::map<std::string, model::ModelConfig> models;
  std::map<std::string, v1::Dataset> datasets;
  std::optional<WorkerMemory> memory = WorkerMemory{64 * kGiB, "the largest worker (w-1)"};
};

v1::CreateJobRequest Request() {
  v1::CreateJobRequest r;
  r.mutable_spec()->set_base_model("tiny");
  r.mutable_spec()->set_method(v1::LORA);
  r.mutable_spec()->set_training_dataset_id("ds-text");
  return r;
}

TEST(AdmitJob, AGoodRequestComesBackWithDefaults) {
  FakeSources sources;
  auto spec = AdmitJob(Request(), sources);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->lora().r(), 8);
  EXPECT_EQ(spec->target_modules_size(), 2);
}

// A dataset stored with its bad lines counted (uploaded with allow_bad_lines) is for jobs with
// skip_bad_lines only: others are refused at submit naming the field and the count (issue 18).
TEST(AdmitJob, ADatasetWithBadLinesNeedsSkipBadLines) {
  FakeSources sources;
  v1::Dataset bad = sources.datasets["ds-text"];
  bad.set_id("ds-bad");
  bad.set_filename("train.jsonl");
  bad.set_lines(10);
  bad.set_bad_lines(3);
  sources.datasets["ds-bad"] = bad;
  v1::CreateJobRequest request = Request();
  request.mutable_spec()->set_validation_dataset_id("ds-bad");
  auto refused = AdmitJob(request, sources);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_EQ(refused.status().message(),
            "skip_bad_lines: validation_dataset_id ds-bad (train.jsonl) has 3 bad lines of 10; set "
            "skip_bad_lines: true (peftctl submit --skip-bad-lines) to train on its valid lines, "
            "or fix the file and upload it again");
  request.mutable_spec()->set_skip_bad_lines(true);
  EXPECT_TRUE(AdmitJob(request, sources).ok());
}

TEST(AdmitJob, TheIssueRowsAreRefusedWithTheirCodeAndMessage) {
  struct Case {
    std::function<void(v1::CreateJobRequest&)> mutate;
    absl::StatusCode code;
    std::string message_start;
  };
  const Case cases[] = {
      {[](v1::CreateJobRequest& r) {
         r.mutable_spec()->add_target_modules("re:" + std::string(50000, '(') +
                                              std::string(50000, ')'));
       },
       absl::StatusCode::kInvalidArgument,
       "target_modules[0]: at most 512 characters per entry, got 100003"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->add_exclude_modules("re:("); },
       absl::StatusCode::kInvalidArgument, "exclude_modules[0]: bad regular expression"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->mutable_lora()->set_r(2000000000); },
       absl::StatusCode::kInvalidArgument, "lora.r: must be in [1, 4096], got 2000000000"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->mutable_lora()->set_alpha(1e38f * 10); },
       absl::StatusCode::kInvalidArgument, "lora.alpha: must be a finite number in (0, 1000000]"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->set_num_threads(1000000); },
       absl::StatusCode::kInvalidArgument, "num_threads: must be in [0, 1024]"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->set_max_attempts(1000000); },
       absl::StatusCode::kInvalidArgument, "max_attempts: must be in [1, 100]"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->add_target_modules("no_such_proj"); },
       absl::StatusCode::kInvalidArgument,
       "target_modules[0]: 'no_such_proj' matches no Linear module of the model; the model's "
       "Linear modules are model.layers.{0..1}.self_attn.q_proj"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->add_layers_to_transform(99); },
       absl::StatusCode::kInvalidArgument,
       "layers_to_transform[0]: layer 99 is outside [0, 2): base_model 'tiny' has "
       "num_hidden_layers = 2"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->set_base_model("nope"); },
       absl::StatusCode::kNotFound, "base_model: no nope"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->set_training_dataset_id("ds-x"); },
       absl::StatusCode::kNotFound, "training_dataset_id: no dataset 'ds-x' on this server"},
      {[](v1::CreateJobRequest& r) { r.mutable_spec()->set_training_dataset_id("ds-cls"); },
       absl::StatusCode::kInvalidArgument,
       "training_dataset_id: dataset ds-cls holds classification records"},
      {[](v1::CreateJobRequest& r) { r.set_request_id(std::string(129, 'r')); },
       absl::StatusCode::kInvalidArgument, "request_id: at most 128 characters, got 129"},
      {[](v1::CreateJobRequest& r) {
         r.mutable_spec()->set_base_model("llama-7b");
         r.mutable_spec()->set_batch_size(64);
         r.mutable_spec()->set_max_seq_len(4096);
       },
       absl::StatusCode::kResourceExhausted, "the job needs an estimated "},
  };
  for (const Case& c : cases) {
    FakeSources sources;
    v1::CreateJobRequest r = Request();
    c.mutate(r);
    auto spec = AdmitJob(r, sources);
    ASSERT_FALSE(spec.ok()) << c.message_start;
    EXPECT_EQ(spec.status().code(), c.code) << spec.status();
    EXPECT_THAT(std::string(spec.status().message()), StartsWith(c.message_start));
  }
}

TEST(AdmitJob, ABigRankOnABigModelIsRefusedByTheEstimateNamingItAndTheWorker) {
  FakeSources sources;
  v1::CreateJobRequest r = Request();
  r.mutable_spec()->set_base_model("llama-7b");
  for (const char* m :
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
    r.mutable_spec()->add_target_modules(m);
  }
  r.mutable_spec()->mutable_lora()->set_r(8);
  r.mutable_spec()->set_batch_size(2);
  ASSERT_TRUE(AdmitJob(r, sources).ok()) << AdmitJob(r, sources).status();
  r.mutable_spec()->mutable_lora()->set_r(4096);  // within lora.r's range
  auto refused = AdmitJob(r, sources);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(
      std::string(refused.status().message()),
      ::testing::MatchesRegex("the job needs an estimated [0-9.]+ GiB of memory at its peak "
                              "\\(weights 25.1, adapter [0-9.]+, .*\\), more than the "
                              "largest worker \\(w-1\\) has: 64.0 GiB\\. Lower batch_size.*"));
  // Without any worker memory to compare with, the estimate is not checked.
  sources.memory.reset();
  EXPECT_TRUE(AdmitJob(r, sources).ok());
}

TEST(LargestWorkerMemory, PicksTheLargestKnownOrNothing) {
  EXPECT_EQ(LargestWorkerMemory({}, 0), std::nullopt);
  auto local = LargestWorkerMemory({}, 16 * kGiB);
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(local->bytes, 16 * kGiB);
  EXPECT_EQ(local->what, "this host (its local workers have not registered yet)");
  auto two = LargestWorkerMemory({{"w-1", 8 * kGiB}, {"w-2", 32 * kGiB}}, 16 * kGiB);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->bytes, 32 * kGiB);
  EXPECT_EQ(two->what, "the largest worker (w-2)");
  EXPECT_EQ(LargestWorkerMemory({{"w-1", 8 * kGiB}}, 0)->what, "the only worker (w-1)");
  // A worker that advertises nothing might be the largest: no check.
  EXPECT_EQ(LargestWorkerMemory({{"w-1", 8 * kGiB}, {"old", 0}}, 16 * kGiB), std::nullopt);
}

TEST(AdvertisedMemory, IsTheLargestDevice) {
  v1::RegisterRequest r;
  EXPECT_EQ(AdvertisedMemory(r), 0);
  r.add_devices()->set_memory_bytes(8 * kGiB);
  r.add_devices()->set_memory_bytes(24 * kGiB);
  EXPECT_EQ(AdvertisedMemory(r), 24 * kGiB);
}

}  // namespace
}  // namespace peftd::server
