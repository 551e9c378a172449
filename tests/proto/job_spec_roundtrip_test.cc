// A full job spec survives binary and JSON round trips with every field intact.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "peftd/v1/jobs.pb.h"
#include "peftd/v1/worker.pb.h"

namespace peftd {
namespace {

using google::protobuf::util::MessageDifferencer;

v1::JobSpec FullSpec() {
  v1::JobSpec spec;
  spec.set_base_model("tiny-llama");
  spec.set_method(v1::ADALORA);
  auto* ada = spec.mutable_adalora();
  ada->set_init_r(12);
  ada->set_target_r(8);
  ada->set_alpha(32);
  ada->set_dropout(0.05f);
  ada->set_tinit(100);
  ada->set_tfinal(200);
  ada->set_delta_t(10);
  ada->set_beta1(0.85f);
  ada->set_beta2(0.85f);
  ada->set_orth_reg_weight(0.5f);
  spec.mutable_token_gate()->set_enabled(true);
  spec.mutable_token_gate()->set_s(4e-5);
  spec.mutable_token_gate()->set_lambda(1e-6);
  spec.add_target_modules("q_proj");
  spec.add_target_modules("v_proj");
  spec.add_exclude_modules("lm_head");
  spec.add_layers_to_transform(0);
  spec.add_layers_to_transform(3);
  spec.set_task(v1::SEQ_CLS);
  spec.set_num_labels(2);
  spec.add_label_names("negative");
  spec.add_label_names("positive");
  spec.set_training_dataset_id("ds-0123456789abcdef");
  spec.set_validation_dataset_id("ds-fedcba9876543210");
  spec.set_chat_template("chatml");
  spec.set_epochs(3);
  spec.set_max_steps(1000);
  spec.set_batch_size(16);
  spec.set_gradient_accumulation_steps(4);
  spec.set_learning_rate(2e-4);
  spec.set_lr_schedule(v1::COSINE);
  spec.set_warmup_ratio(0.1);
  spec.set_warmup_steps(20);
  spec.set_weight_decay(0.01);
  spec.set_max_grad_norm(1.0);
  spec.set_max_seq_len(512);
  spec.set_truncate(true);
  spec.set_skip_bad_lines(true);
  spec.set_seed(1234);
  spec.set_eval_interval_steps(50);
  spec.set_checkpoint_interval_steps(100);
  spec.set_max_attempts(3);
  spec.set_num_threads(2);
  spec.set_early_stopping_patience(3);
  spec.set_export_merged(true);
  return spec;
}

TEST(ProtoRoundTrip, FullJobSpecBinary) {
  v1::CreateJobRequest req;
  *req.mutable_spec() = FullSpec();
  req.set_request_id("req-1");
  req.set_display_name("my job");
  (*req.mutable_labels())["team"] = "nlp";
  std::string bytes;
  ASSERT_TRUE(req.SerializeToString(&bytes));
  v1::CreateJobRequest back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(req, back));
  EXPECT_EQ(back.spec().method_params_case(), v1::JobSpec::kAdalora);
  EXPECT_EQ(back.spec().adalora().tfinal(), 200);
}

TEST(ProtoRoundTrip, FullJobSpecJson) {
  v1::JobSpec spec = FullSpec();
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(spec, &json).ok());
  EXPECT_NE(json.find("\"tokenGate\""), std::string::npos);
  v1::JobSpec back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(spec, back));
}

TEST(ProtoRoundTrip, EveryMethodParamsCase) {
  v1::JobSpec spec;
  spec.mutable_lora()->set_r(4);
  EXPECT_EQ(spec.method_params_case(), v1::JobSpec::kLora);
  spec.mutable_hut()->set_r(8);
  EXPECT_EQ(spec.method_params_case(), v1::JobSpec::kHut);
  EXPECT_FALSE(spec.has_lora());
  spec.mutable_adadhp()->set_target_num(96);
  EXPECT_EQ(spec.method_params_case(), v1::JobSpec::kAdadhp);
}

TEST(ProtoRoundTrip, LeaseCarriesSpecAndResumePoint) {
  v1::HeartbeatResponse resp;
  auto* lease = resp.add_leases();
  lease->set_job_id("job-1");
  lease->set_attempt(2);
  *lease->mutable_spec() = FullSpec();
  lease->mutable_resume_from()->set_step(100);
  lease->mutable_resume_from()->set_sha256(std::string(64, 'a'));
  resp.add_cancel_job_ids("job-2");
  std::string bytes;
  ASSERT_TRUE(resp.SerializeToString(&bytes));
  v1::HeartbeatResponse back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(resp, back));
}

}  // namespace
}  // namespace peftd
