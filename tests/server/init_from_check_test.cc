// Admission of JobSpec.init_from: the job to start from must exist, have ended, have the adapter or
// checkpoint asked for, and have trained the same shapes; each refusal names the field.
#include "server/init_from_check.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/match.h"
#include "common/job_spec.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

class Sources : public AdmissionSources {
 public:
  Sources() {
    config = *model::ParseModelConfig(peftd::testing::kTestModelConfigJson);
    v1::Dataset text;
    text.set_id("ds-text");
    text.set_format("text");
    text.set_size_bytes(100);
    dataset = text;
    v1::Job done;
    done.set_id("job-done");
    done.set_state(v1::SUCCEEDED);
    *done.mutable_spec() = WithDefaults(Spec());
    for (int step : {50, 100}) done.add_checkpoints()->set_step(step);
    jobs["job-done"] = done;
    v1::Job failed = done;
    failed.set_id("job-failed");
    failed.set_state(v1::FAILED);
    jobs["job-failed"] = failed;
    v1::Job running = done;
    running.set_id("job-running");
    running.set_state(v1::RUNNING);
    jobs["job-running"] = running;
  }
  static v1::JobSpec Spec() {
    v1::JobSpec s;
    s.set_base_model("tiny");
    s.set_method(v1::LORA);
    s.set_training_dataset_id("ds-text");
    s.mutable_token_gate()->set_enabled(true);
    return s;
  }
  absl::StatusOr<model::ModelConfig> ReadModelConfig(const std::string&) override { return config; }
  absl::StatusOr<v1::Dataset> GetDataset(const std::string&) override { return dataset; }
  std::optional<WorkerMemory> LargestWorkerMemory() override { return std::nullopt; }
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override {
    auto it = jobs.find(id);
    if (it == jobs.end()) return absl::NotFoundError("no job");
    return it->second;
  }

  model::ModelConfig config;
  v1::Dataset dataset;
  std::map<std::string, v1::Job> jobs;
};

absl::Status Admit(Sources& sources, const std::function<void(v1::JobSpec*)>& edit) {
  v1::CreateJobRequest req;
  *req.mutable_spec() = Sources::Spec();
  edit(req.mutable_spec());
  return AdmitJob(req, sources).status();
}

TEST(InitFrom, AJobOfTheSameShapesIsAccepted) {
  Sources sources;
  EXPECT_TRUE(
      Admit(sources, [](v1::JobSpec* s) { s->mutable_init_from()->set_job("job-done"); }).ok());
  // A kept checkpoint of a job that failed later is a fine start too; so are other
  // hyper-parameters (learning rate, steps, the gate's s and lambda, the data).
  EXPECT_TRUE(Admit(sources, [](v1::JobSpec* s) {
                s->mutable_init_from()->set_job("job-failed");
                s->mutable_init_from()->set_step(100);
                s->set_learning_rate(1e-3);
                s->mutable_token_gate()->set_lambda(1e-4);
              }).ok());
}

TEST(InitFrom, RefusalsNameTheFieldAndWhatDiffers) {
  Sources sources;
  struct Case {
    std::function<void(v1::JobSpec*)> edit;
    absl::StatusCode code;
    std::string prefix;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec* s) { s->mutable_init_from(); }, absl::StatusCode::kInvalidArgument,
       "init_from.job: required"},
      {[](v1::JobSpec* s) {
         s->mutable_init_from()->set_job("job-done");
         s->mutable_init_from()->set_step(-1);
       },
       absl::StatusCode::kInvalidArgument, "init_from.step: must be in [0, "},
      {[](v1::JobSpec* s) { s->mutable_init_from()->set_job("job-nope"); },
       absl::StatusCode::kNotFound, "init_from.job: no job 'job-nope' on this server"},
      {[](v1::JobSpec* s) { s->mutable_init_from()->set_job("job-running"); },
       absl::StatusCode::kFailedPrecondition, "init_from.job: job job-running is RUNNING"},
      {[](v1::JobSpec* s) { s->mutable_init_from()->set_job("job-failed"); },
       absl::StatusCode::kFailedPrecondition,
       "init_from.job: job job-failed ended FAILED and has no adapter; give init_from.step of a "
       "kept checkpoint (it keeps 50, 100)"},
      {[](v1::JobSpec* s) {
         s->mutable_init_from()->set_job("job-done");
         s->mutable_init_from()->set_step(75);
       },
       absl::StatusCode::kFailedPrecondition,
       "init_from.step: job job-done keeps no checkpoint of step 75; it keeps 50, 100"},
      {[](v1::JobSpec* s) {
         s->mutable_init_from()->set_job("job-done");
         s->set_method(v1::DORA);
       },
       absl::StatusCode::kInvalidArgument,
       "init_from: job job-done trained with method LORA, this job has DORA"},
      {[](v1::JobSpec* s) {
         s->mutable_init_from()->set_job("job-done");
         s->mutable_token_gate()->set_enabled(false);
       },
       absl::StatusCode::kInvalidArgument,
       "init_from: job job-done trained with the token gate on, this job has off"},
      {[](v1::JobSpec* s) {
         s->mutable_init_from()->set_job("job-done");
         s->mutable_lora()->set_r(16);
       },
       absl::StatusCode::kInvalidArgument,
       "init_from: job job-done trained with rank 8, this job has 16"},
      {[](v1::JobSpec* s) {
         s->mutable_init_from()->set_job("job-done");
         s->add_target_modules("q_proj");
       },
       absl::StatusCode::kInvalidArgument,
       "init_from: job job-done adapted 4 modules, this job 2 (first difference: "
       "model.layers.0.self_attn.v_proj vs model.layers.1.self_attn.q_proj)"},
  };
  for (const Case& c : cases) {
    absl::Status st = Admit(sources, c.edit);
    EXPECT_EQ(st.code(), c.code) << st;
    EXPECT_TRUE(absl::StartsWith(st.message(), c.prefix))
        << st.message() << "\nexpected to start with: " << c.prefix;
  }
}

}  // namespace
}  // namespace peftd::server
