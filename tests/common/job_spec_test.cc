#include "common/job_spec.h"

#include <gtest/gtest.h>

#include <functional>

namespace peftd {
namespace {

v1::JobSpec Minimal() {
  v1::JobSpec s;
  s.set_base_model("tiny");
  s.set_method(v1::LORA);
  s.set_training_dataset_id("ds-1");
  return s;
}

TEST(JobSpec, DefaultsFillEveryUnsetField) {
  v1::JobSpec s = WithDefaults(Minimal());
  EXPECT_EQ(s.lora().r(), 8);
  EXPECT_EQ(s.lora().alpha(), 16);
  ASSERT_EQ(s.target_modules_size(), 2);
  EXPECT_EQ(s.target_modules(0), "q_proj");
  EXPECT_EQ(s.task(), v1::CAUSAL_LM);
  EXPECT_EQ(s.batch_size(), 8);
  EXPECT_DOUBLE_EQ(s.learning_rate(), 2e-4);
  EXPECT_DOUBLE_EQ(s.max_grad_norm(), 1.0);
  EXPECT_TRUE(s.truncate());
  EXPECT_EQ(s.seed(), 42u);
  EXPECT_EQ(s.max_attempts(), 3);
  EXPECT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
}

TEST(JobSpec, ExplicitZeroesSurviveDefaults) {
  v1::JobSpec in = Minimal();
  in.set_max_grad_norm(0);
  in.set_truncate(false);
  in.set_seed(0);
  v1::JobSpec s = WithDefaults(in);
  EXPECT_EQ(s.max_grad_norm(), 0);
  EXPECT_FALSE(s.truncate());
  EXPECT_EQ(s.seed(), 0u);
}

TEST(JobSpec, GateDefaultsOnlyWhenEnabled) {
  v1::JobSpec in = Minimal();
  EXPECT_EQ(WithDefaults(in).token_gate().s(), 0);
  in.mutable_token_gate()->set_enabled(true);
  EXPECT_DOUBLE_EQ(WithDefaults(in).token_gate().s(), 4e-5);
}

struct BadCase {
  const char* field;
  std::function<void(v1::JobSpec&)> mutate;
};

TEST(JobSpec, EveryBadFieldIsNamed) {
  const BadCase cases[] = {
      {"base_model", [](v1::JobSpec& s) { s.clear_base_model(); }},
      {"method", [](v1::JobSpec& s) { s.set_method(v1::METHOD_UNSPECIFIED); }},
      {"method_params", [](v1::JobSpec& s) { s.mutable_hut()->set_r(4); }},
      {"lora.r", [](v1::JobSpec& s) { s.mutable_lora()->set_r(-1); }},
      {"lora.dropout", [](v1::JobSpec& s) { s.mutable_lora()->set_dropout(1.0f); }},
      {"adalora.target_r",
       [](v1::JobSpec& s) {
         s.set_method(v1::ADALORA);
         s.mutable_adalora()->set_init_r(4);
         s.mutable_adalora()->set_target_r(6);
       }},
      {"adalora.tinit",
       [](v1::JobSpec& s) {
         s.set_method(v1::ADALORA);
         s.set_max_steps(100);
         s.mutable_adalora()->set_tinit(60);
         s.mutable_adalora()->set_tfinal(40);
       }},
      {"adadhp.tfinal",
       [](v1::JobSpec& s) {
         s.set_method(v1::ADADHP);
         s.mutable_adadhp()->set_tinit(10);
         s.mutable_adadhp()->set_tfinal(5);
       }},
      {"token_gate.lambda",
       [](v1::JobSpec& s) {
         s.mutable_token_gate()->set_enabled(true);
         s.mutable_token_gate()->set_lambda(-1);
       }},
      {"target_modules[1]",
       [](v1::JobSpec& s) {
         s.add_target_modules("q_proj");
         s.add_target_modules("re:((");
       }},
      {"layers_to_transform[0]", [](v1::JobSpec& s) { s.add_layers_to_transform(-2); }},
      {"num_labels",
       [](v1::JobSpec& s) {
         s.set_task(v1::SEQ_CLS);
         s.set_num_labels(1);
       }},
      {"label_names",
       [](v1::JobSpec& s) {
         s.set_task(v1::SEQ_CLS);
         s.set_num_labels(2);
         s.add_label_names("only-one");
       }},
      {"training_dataset_id", [](v1::JobSpec& s) { s.clear_training_dataset_id(); }},
      {"chat_template", [](v1::JobSpec& s) { s.set_chat_template("vicuna"); }},
      {"batch_size", [](v1::JobSpec& s) { s.set_batch_size(-4); }},
      {"learning_rate", [](v1::JobSpec& s) { s.set_learning_rate(-1); }},
      {"warmup_ratio", [](v1::JobSpec& s) { s.set_warmup_ratio(1.5); }},
      {"max_grad_norm", [](v1::JobSpec& s) { s.set_max_grad_norm(-1); }},
      {"max_seq_len", [](v1::JobSpec& s) { s.set_max_seq_len(1); }},
      {"early_stopping_patience", [](v1::JobSpec& s) { s.set_early_stopping_patience(2); }},
      {"export_merged",
       [](v1::JobSpec& s) {
         s.set_export_merged(true);
         s.mutable_token_gate()->set_enabled(true);
       }},
  };
  for (const auto& c : cases) {
    v1::JobSpec s = Minimal();
    c.mutate(s);
    absl::Status st = ValidateJobSpec(WithDefaults(s));
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(st.message().substr(0, std::string(c.field).size() + 1), std::string(c.field) + ":")
        << st.message();
  }
}

}  // namespace
}  // namespace peftd
