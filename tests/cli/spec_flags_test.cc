// Submit flags onto a CreateJobRequest: each flag sets its field, overrides a job file, and the
// method's own parameters follow --method.
#include "clients/cli/spec_flags.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "clients/cli/exit_codes.h"

namespace peftd::cli {
namespace {

TEST(ApplySubmitFlags, EveryCommonFlagSetsItsField) {
  SubmitFlags f;
  f.model = "tiny-llama";
  f.method = "DoRA";
  f.rank = 16;
  f.alpha = 32;
  f.dropout = 0.1;
  f.gate_s = 1e-4;
  f.train = "ds-aaaa";
  f.val = "ds-bbbb";
  f.steps = 200;
  f.epochs = 2;
  f.lr = 1e-3;
  f.schedule = "cosine";
  f.batch_size = 4;
  f.grad_accum = 2;
  f.task = "seq_cls";
  f.num_labels = 3;
  f.max_attempts = 5;
  f.workers = 2;
  f.seed = 9;
  f.target_modules = {"q_proj, k_proj", "re:.*\\.(o|v)_proj"};
  f.labels = {"team=nlp", "run=a=b"};
  f.name = "my job";
  f.request_id = "r-1";
  v1::CreateJobRequest req;
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  const auto& s = req.spec();
  EXPECT_EQ(s.base_model(), "tiny-llama");
  EXPECT_EQ(s.method(), v1::DORA);
  EXPECT_EQ(s.lora().r(), 16);
  EXPECT_FLOAT_EQ(s.lora().alpha(), 32);
  EXPECT_FLOAT_EQ(s.lora().dropout(), 0.1f);
  EXPECT_TRUE(s.token_gate().enabled());
  EXPECT_DOUBLE_EQ(s.token_gate().s(), 1e-4);
  EXPECT_EQ(s.training_dataset_id(), "ds-aaaa");
  EXPECT_EQ(s.validation_dataset_id(), "ds-bbbb");
  EXPECT_EQ(s.max_steps(), 200);
  EXPECT_EQ(s.epochs(), 2);
  EXPECT_DOUBLE_EQ(s.learning_rate(), 1e-3);
  EXPECT_EQ(s.lr_schedule(), v1::COSINE);
  EXPECT_EQ(s.batch_size(), 4);
  EXPECT_EQ(s.gradient_accumulation_steps(), 2);
  EXPECT_EQ(s.task(), v1::SEQ_CLS);
  EXPECT_EQ(s.num_labels(), 3);
  EXPECT_EQ(s.max_attempts(), 5);
  EXPECT_EQ(s.workers(), 2);
  EXPECT_EQ(s.seed(), 9u);
  ASSERT_EQ(s.target_modules_size(), 3);
  EXPECT_EQ(s.target_modules(0), "q_proj");
  EXPECT_EQ(s.target_modules(1), "k_proj");
  EXPECT_EQ(s.target_modules(2), "re:.*\\.(o|v)_proj");
  EXPECT_EQ(req.labels().at("team"), "nlp");
  EXPECT_EQ(req.labels().at("run"), "a=b");
  EXPECT_EQ(req.display_name(), "my job");
  EXPECT_EQ(req.request_id(), "r-1");
}

TEST(ApplySubmitFlags, FlagsOverrideTheFileAndLeaveTheRest) {
  v1::CreateJobRequest req;
  req.mutable_spec()->set_base_model("from-file");
  req.mutable_spec()->set_method(v1::LORA);
  req.mutable_spec()->mutable_lora()->set_r(4);
  req.mutable_spec()->mutable_lora()->set_alpha(8);
  req.mutable_spec()->set_max_steps(10);
  req.mutable_spec()->add_target_modules("q_proj");
  req.mutable_spec()->mutable_token_gate()->set_enabled(true);
  SubmitFlags f;
  f.steps = 99;
  f.rank = 32;
  f.gate = false;
  f.target_modules = {"o_proj"};
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().base_model(), "from-file");
  EXPECT_EQ(req.spec().max_steps(), 99);
  EXPECT_EQ(req.spec().lora().r(), 32);
  EXPECT_FLOAT_EQ(req.spec().lora().alpha(), 8);
  EXPECT_FALSE(req.spec().token_gate().enabled());
  ASSERT_EQ(req.spec().target_modules_size(), 1);
  EXPECT_EQ(req.spec().target_modules(0), "o_proj");
}

TEST(ApplySubmitFlags, RankFollowsTheMethod) {
  struct Case {
    const char* method;
    v1::JobSpec::MethodParamsCase params;
  };
  for (const Case& c : {Case{"lora", v1::JobSpec::kLora}, Case{"adalora", v1::JobSpec::kAdalora},
                        Case{"hut", v1::JobSpec::kHut}}) {
    SubmitFlags f;
    f.method = c.method;
    f.rank = 6;
    v1::CreateJobRequest req;
    ASSERT_TRUE(ApplySubmitFlags(f, &req).ok()) << c.method;
    EXPECT_EQ(req.spec().method_params_case(), c.params) << c.method;
  }
  SubmitFlags f;
  f.method = "adalora";
  f.rank = 6;
  v1::CreateJobRequest req;
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().adalora().target_r(), 6);
}

TEST(ApplySubmitFlags, ChangingTheMethodDropsTheOtherMethodsParams) {
  v1::CreateJobRequest req;
  req.mutable_spec()->set_method(v1::LORA);
  req.mutable_spec()->mutable_lora()->set_r(4);
  SubmitFlags f;
  f.method = "hut";
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().method_params_case(), v1::JobSpec::METHOD_PARAMS_NOT_SET);
  // LoRA -> DoRA keeps them: DoRA uses the lora parameters.
  req.mutable_spec()->set_method(v1::LORA);
  req.mutable_spec()->mutable_lora()->set_r(4);
  f.method = "dora";
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().lora().r(), 4);
}

TEST(ApplySubmitFlags, RefusalsNameTheFlag) {
  auto error = [](SubmitFlags f) {
    v1::CreateJobRequest req;
    absl::Status s = ApplySubmitFlags(f, &req);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  SubmitFlags f;
  f.method = "lorra";
  EXPECT_EQ(error(f), "--method: unknown method 'lorra': one of lora, dora, adalora, hut, adadhp");
  f = {};
  f.method = "adadhp";
  f.rank = 4;
  EXPECT_TRUE(absl::StartsWith(error(f), "--rank: adadhp has no rank")) << error(f);
  f = {};
  f.rank = 4;
  EXPECT_TRUE(absl::StrContains(error(f), "give --method")) << error(f);
  f = {};
  f.task = "regression";
  EXPECT_EQ(error(f), "--task: unknown task 'regression': one of causal_lm, seq_cls, seq_2_seq_lm");
  f = {};
  f.labels = {"novalue"};
  EXPECT_EQ(error(f), "--label: 'novalue' is not key=value (e.g. --label team=nlp)");
  for (const char* bad : {"job-1@", "@5", "job-1@x", "job-1@0", "a@1@2"}) {
    f = {};
    f.init_from = bad;
    EXPECT_TRUE(absl::StartsWith(error(f), "--init-from: expected JOB")) << bad;
  }
}

TEST(ApplySubmitFlags, InitFromTakesAJobAndAnOptionalStep) {
  SubmitFlags f;
  f.init_from = "job-1";
  v1::CreateJobRequest req;
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().init_from().job(), "job-1");
  EXPECT_EQ(req.spec().init_from().step(), 0);
  f.init_from = "job-1@50";
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().init_from().step(), 50);
}

// A 0 for a field that reads 0 as "the default" would be replaced silently (--lr 0 trained at
// 2e-4): refused, naming the flag, as a usage error.
TEST(ApplySubmitFlags, ZeroThatMeansDefaultIsRefused) {
  SubmitFlags lr;
  lr.lr = 0;
  v1::CreateJobRequest req;
  absl::Status st = ApplySubmitFlags(lr, &req);
  EXPECT_TRUE(IsUsageError(st)) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "--lr: must be > 0")) << st;
  SubmitFlags gate;
  gate.gate_s = 0;
  st = ApplySubmitFlags(gate, &req);
  EXPECT_TRUE(IsUsageError(st)) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "--gate-s: must be > 0")) << st;
  SubmitFlags fine;
  fine.lr = 1e-3;
  fine.gate_s = 1e-4;
  EXPECT_TRUE(ApplySubmitFlags(fine, &req).ok());
}

// --rank is AdaLoRA's target_r, which must not pass init_r (default 12): an unset init_r is
// raised with it; one the job file set is kept and both are named.
TEST(ApplySubmitFlags, AdaloraRankRaisesInitR) {
  SubmitFlags f;
  f.method = "adalora";
  f.rank = 16;
  v1::CreateJobRequest req;
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  EXPECT_EQ(req.spec().adalora().target_r(), 16);
  EXPECT_EQ(req.spec().adalora().init_r(), 16);
  f.rank = 8;
  v1::CreateJobRequest small;
  ASSERT_TRUE(ApplySubmitFlags(f, &small).ok());
  EXPECT_EQ(small.spec().adalora().init_r(), 0);  // the default 12 stands
  v1::CreateJobRequest from_file;
  from_file.mutable_spec()->set_method(v1::ADALORA);
  from_file.mutable_spec()->mutable_adalora()->set_init_r(12);
  f.rank = 16;
  absl::Status st = ApplySubmitFlags(f, &from_file);
  EXPECT_TRUE(IsUsageError(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "adalora.target_r")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "adalora.init_r (12")) << st;
}

TEST(ApplySubmitFlags, LabelNamesAndSkipBadLines) {
  SubmitFlags f;
  f.label_names = {"neg, pos", "neutral"};
  f.skip_bad_lines = true;
  v1::CreateJobRequest req;
  ASSERT_TRUE(ApplySubmitFlags(f, &req).ok());
  ASSERT_EQ(req.spec().label_names_size(), 3);
  EXPECT_EQ(req.spec().label_names(0), "neg");
  EXPECT_EQ(req.spec().label_names(2), "neutral");
  EXPECT_TRUE(req.spec().skip_bad_lines());
}

// CLI11 puts the flag's name in front of a validator's message: the message must not repeat it
// (before: "--label: --label: 'bad' is not key=value").
TEST(CheckLabelFlag, MessageWithoutTheFlagName) {
  EXPECT_EQ(CheckLabelFlag("team=nlp"), "");
  EXPECT_EQ(CheckLabelFlag("bad"), "'bad' is not key=value (e.g. --label team=nlp)");
  EXPECT_EQ(CheckStateFlag("queued,running"), "");
  EXPECT_TRUE(absl::StartsWith(CheckStateFlag("queued,bogus"), "unknown state 'bogus'"));
}

TEST(ParseState, CaseInsensitive) {
  EXPECT_EQ(*ParseState("Running"), v1::RUNNING);
  EXPECT_FALSE(ParseState("job_state_unspecified").ok());
}

TEST(RandomRequestId, DistinctAndShaped) {
  std::string a = RandomRequestId(), b = RandomRequestId();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 18u);
  EXPECT_TRUE(absl::StartsWith(a, "r-"));
}

}  // namespace
}  // namespace peftd::cli
