// Continue training end to end (JobSpec.init_from): a real worker trains job A; job B starts from
// A's adapter and job C from A's checkpoint of step 6, each with a learning rate too small to move
// the weights, so their eval loss is the one A's weights have: A's final eval loss for B, A's eval
// at step 6 for C; a fresh job D with the same settings has the base model's loss instead. A job
// whose rank differs from A's is refused at submit. A records the output norms of every module it
// adapted (JobProgress.module_norms), and a job whose selection is NORM_RELATIVE / NORM_ABS of A
// trains on the module A reported the highest mean ‖M(x)‖/‖W0 x‖ / ‖M(x)‖ of.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/peftd_process.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::Concat;
using testing::kExamples;
using testing::Peftctl;
using testing::PeftdProcess;
using testing::RunResult;
using testing::Words;

class InitFromE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("init_from");
    server_ = std::make_unique<PeftdProcess>(
        (dir_ / "data").string(),
        std::vector<std::string>{"--model-root=" + (dir_ / "models").string(), "--local-workers=1",
                                 "--heartbeat-interval=500ms", "--lease-timeout=10s"});
    server_->set_log_file((dir_ / "peftd.log").string());
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
  }

  // Submits a job (one CPU thread; `init_from` and `selection` as JSON, or none) and waits for it
  // to end.
  RunResult Run(const std::string& flags, const std::string& init_from = "",
                const std::string& selection = "") {
    const fs::path file = dir_ / absl::StrCat("job", files_++, ".json");
    std::ofstream(file) << "{\"num_threads\": 1"
                        << (init_from.empty() ? "" : ", \"init_from\": " + init_from)
                        << (selection.empty() ? "" : ", \"selection\": " + selection) << "}";
    return Peftctl(server_->address(),
                   Concat({"--json", "submit", "-f", file.string(), "--train",
                           kExamples + "/tiny-lm-train.jsonl", "--val",
                           kExamples + "/tiny-lm-val.jsonl", "--watch"},
                          Words("--model tiny-llama --method lora --batch-size 4 "
                                "--max-seq-len 48 " +
                                flags)));
  }

  v1::Job Get(const std::string& id) {
    RunResult r = Peftctl(server_->address(), {"--json", "get", id});
    v1::Job job;
    EXPECT_TRUE(testing::ParseJson(r.out, &job)) << r.Describe();
    return job;
  }

  // The id of the job a `submit --json --watch` run printed first.
  static std::string JobId(const RunResult& r) {
    const size_t at = r.out.find("\"id\": \"job-");
    if (at != std::string::npos) return r.out.substr(at + 7, 20);
    const size_t compact = r.out.find("\"id\":\"job-");
    return compact == std::string::npos ? "" : r.out.substr(compact + 6, 20);
  }

  fs::path dir_;
  int files_ = 0;
  std::unique_ptr<PeftdProcess> server_;
};

TEST_F(InitFromE2e, AJobStartsFromTheAdapterOrACheckpointOfAnother) {
  const RunResult a =
      Run("--rank 4 --steps 12 --lr 3e-3 --eval-interval 6 --checkpoint-interval 6");
  ASSERT_EQ(a.exit_code, 0) << a.Describe() << testing::ReadFile(dir_ / "peftd.log");
  const std::string a_id = JobId(a);
  const v1::Job job_a = Get(a_id);
  ASSERT_TRUE(job_a.progress().has_eval());
  // A's evaluation at step 6, from its event log.
  RunResult events = Peftctl(server_->address(), {"--json", "events", a_id});
  v1::ListJobEventsResponse log;
  ASSERT_TRUE(testing::ParseJson(events.out, &log)) << events.Describe();
  double a_eval_at_6 = -1;
  for (const auto& e : log.events()) {
    if (e.progress().step() == 6 && e.progress().has_eval()) a_eval_at_6 = e.progress().eval_loss();
  }
  ASSERT_GT(a_eval_at_6, 0) << events.out;

  // The adapter of the checkpoint of step 6, as a PEFT folder; a step it keeps no checkpoint of
  // is not found.
  const RunResult step6 = Peftctl(
      server_->address(), {"download", a_id, "--step", "6", "-o", (dir_ / "step6").string()});
  ASSERT_EQ(step6.exit_code, 0) << step6.Describe();
  EXPECT_TRUE(fs::is_regular_file(dir_ / "step6" / "adapter_config.json"));
  EXPECT_TRUE(fs::is_regular_file(dir_ / "step6" / "adapter_model.safetensors"));
  const RunResult step7 = Peftctl(
      server_->address(), {"download", a_id, "--step", "7", "-o", (dir_ / "step7").string()});
  EXPECT_EQ(step7.exit_code, 3) << step7.Describe();
  EXPECT_NE(step7.err.find("keeps no checkpoint of step 7; it keeps 6"), std::string::npos)
      << step7.err;

  const std::string still = "--rank 4 --steps 1 --lr 1e-9";
  const RunResult b = Run(still, absl::StrCat("{\"job\": \"", a_id, "\"}"));
  ASSERT_EQ(b.exit_code, 0) << b.Describe() << testing::ReadFile(dir_ / "peftd.log");
  const RunResult c = Run(still + " --init-from " + a_id + "@6");  // the flag, not the file
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  const RunResult d = Run(still);
  ASSERT_EQ(d.exit_code, 0) << d.Describe();
  const double loss_a = job_a.progress().eval_loss();
  const double loss_b = Get(JobId(b)).progress().eval_loss();
  const double loss_c = Get(JobId(c)).progress().eval_loss();
  const double loss_d = Get(JobId(d)).progress().eval_loss();
  EXPECT_NEAR(loss_b, loss_a, 1e-4);
  EXPECT_NEAR(loss_c, a_eval_at_6, 1e-4);
  // Training moved A's loss well away from the base model's, which the fresh job keeps.
  EXPECT_GT(std::abs(loss_d - loss_a), 1e-2) << loss_d << " vs " << loss_a;
  EXPECT_NE(b.out.find("starting from the weights of the adapter of job " + a_id),
            std::string::npos)
      << b.out;
  EXPECT_NE(c.out.find("starting from the weights of the checkpoint of step 6 of job " + a_id),
            std::string::npos)
      << c.out;

  // Another rank: refused at submit, naming what differs.
  const RunResult refused = Run("--rank 8 --steps 1", absl::StrCat("{\"job\": \"", a_id, "\"}"));
  EXPECT_EQ(refused.exit_code, 4) << refused.Describe();
  EXPECT_NE(refused.err.find("init_from: job " + a_id + " trained with rank 4, this job has 8"),
            std::string::npos)
      << refused.err;

  // A's module norms: every adapted module (q_proj and v_proj of the 4 layers), over the tokens
  // of the probed steps 1 and 11; ‖M(x)‖ > 0 once B has moved.
  std::string most_relative, most_absolute;
  double best_relative = -1, best_absolute = -1;
  for (const auto& n : job_a.progress().module_norms()) {
    EXPECT_GT(n.tokens(), 0) << n.module();
    EXPECT_GT(n.relative(), 0) << n.module();
    EXPECT_GT(n.absolute(), 0) << n.module();
    if (n.relative() > best_relative) best_relative = n.relative(), most_relative = n.module();
    if (n.absolute() > best_absolute) best_absolute = n.absolute(), most_absolute = n.module();
  }
  EXPECT_EQ(job_a.progress().module_norms_size(), 4 * 2) << job_a.progress().DebugString();
  for (const auto& [criterion, expected] : std::vector<std::pair<std::string, std::string>>{
           {"NORM_RELATIVE", most_relative}, {"NORM_ABS", most_absolute}}) {
    const RunResult chosen = Run("--rank 4 --steps 1", "",
                                 absl::StrCat("{\"from_job\": \"", a_id, "\", \"criterion\": \"",
                                              criterion, "\", \"top_k\": 1}"));
    ASSERT_EQ(chosen.exit_code, 0) << chosen.Describe();
    const v1::Job job = Get(JobId(chosen));
    EXPECT_EQ(job.state(), v1::SUCCEEDED);
    ASSERT_EQ(job.spec().target_modules_size(), 1) << criterion;
    EXPECT_EQ(job.spec().target_modules(0), expected) << criterion;
    EXPECT_EQ(job.progress().module_norms_size(), 1) << criterion;
  }
}

}  // namespace
}  // namespace peftd
