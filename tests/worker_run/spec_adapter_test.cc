// Every JobSpec field reaches its destination in the run plan (or is named as handled by the
// runner or the server), and the values that depend on the run's length are resolved as
// job.proto documents.
#include "worker/spec_adapter.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "common/job_spec.h"

namespace peftd::worker {
namespace {

constexpr int64_t kRecords = 100;

v1::JobSpec Base(v1::Method method = v1::LORA) {
  v1::JobSpec s;
  s.set_base_model("tiny-llama");
  s.set_method(method);
  s.set_training_dataset_id("train.jsonl");
  s.set_max_steps(40);
  return s;
}

RunPlan Plan(const v1::JobSpec& in, int64_t records = kRecords) {
  const v1::JobSpec s = WithDefaults(in);
  EXPECT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
  absl::StatusOr<RunPlan> plan = PlanRun(s, records, /*hardware_threads=*/6);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : RunPlan{};
}

// One check per JobSpec field: changes the field of a valid spec and looks for it in the plan.
using Check = std::function<void()>;

std::map<std::string, Check> FieldChecks() {
  std::map<std::string, Check> c;
  c["base_model"] = [] {
    v1::JobSpec s = Base();
    s.set_base_model("models/llama-3-8b");
    EXPECT_EQ(Plan(s).adapter.base_model_name_or_path, "models/llama-3-8b");
  };
  c["method"] = [] {
    EXPECT_EQ(Plan(Base(v1::LORA)).adapter.method, adapters::MethodKind::kLora);
    EXPECT_EQ(Plan(Base(v1::DORA)).adapter.method, adapters::MethodKind::kDora);
    EXPECT_EQ(Plan(Base(v1::ADALORA)).adapter.method, adapters::MethodKind::kAdaLora);
    EXPECT_EQ(Plan(Base(v1::HUT)).adapter.method, adapters::MethodKind::kHut);
    EXPECT_EQ(Plan(Base(v1::ADADHP)).adapter.method, adapters::MethodKind::kAdaDhp);
  };
  c["lora"] = [] {
    v1::JobSpec s = Base(v1::DORA);
    auto* p = s.mutable_lora();
    p->set_r(5);
    p->set_alpha(11);
    p->set_dropout(0.25f);
    p->set_use_rslora(true);
    p->set_gaussian_init(true);
    const auto& l = Plan(s).adapter.lora;
    EXPECT_EQ(l.r, 5);
    EXPECT_DOUBLE_EQ(l.alpha, 11);
    EXPECT_DOUBLE_EQ(l.dropout, 0.25);
    EXPECT_TRUE(l.use_rslora);
    EXPECT_TRUE(l.gaussian_init);
  };
  c["adalora"] = [] {
    v1::JobSpec s = Base(v1::ADALORA);
    auto* p = s.mutable_adalora();
    p->set_init_r(10);
    p->set_target_r(4);
    p->set_alpha(20);
    p->set_dropout(0.5f);
    p->set_tinit(3);
    p->set_tfinal(7);
    p->set_delta_t(2);
    p->set_beta1(0.5f);
    p->set_beta2(0.75f);
    p->set_orth_reg_weight(0.25f);
    const RunPlan plan = Plan(s);
    EXPECT_EQ(plan.adapter.adalora.init_r, 10);
    EXPECT_DOUBLE_EQ(plan.adapter.adalora.alpha, 20);
    EXPECT_DOUBLE_EQ(plan.adapter.adalora.dropout, 0.5);
    const auto& sch = plan.adapter.adalora_schedule;
    EXPECT_EQ(sch.init_r, 10);
    EXPECT_EQ(sch.target_r, 4);
    EXPECT_EQ(sch.tinit, 3);
    EXPECT_EQ(sch.tfinal, 7);
    EXPECT_EQ(sch.delta_t, 2);
    EXPECT_DOUBLE_EQ(sch.beta1, 0.5);
    EXPECT_DOUBLE_EQ(sch.beta2, 0.75);
    EXPECT_DOUBLE_EQ(sch.orth_reg_weight, 0.25);
    EXPECT_EQ(sch.total_step, 40);
  };
  c["hut"] = [] {
    v1::JobSpec s = Base(v1::HUT);
    s.mutable_hut()->set_r(3);
    EXPECT_EQ(Plan(s).adapter.hut.r, 3);
  };
  c["adadhp"] = [] {
    v1::JobSpec s = Base(v1::ADADHP);
    auto* p = s.mutable_adadhp();
    p->set_target_num(6);
    p->set_tinit(2);
    p->set_tfinal(30);
    p->set_delta_t(4);
    p->set_beta1(0.5f);
    p->set_beta2(0.625f);
    const auto& a = Plan(s).adapter.adadhp;
    EXPECT_EQ(a.target_num, 6);
    EXPECT_EQ(a.tinit, 2);
    EXPECT_EQ(a.tfinal, 30);
    EXPECT_EQ(a.delta_t, 4);
    EXPECT_DOUBLE_EQ(a.beta1, 0.5);
    EXPECT_DOUBLE_EQ(a.beta2, 0.625);
  };
  c["token_gate"] = [] {
    v1::JobSpec s = Base();
    EXPECT_FALSE(Plan(s).adapter.gate.has_value());
    s.mutable_token_gate()->set_enabled(true);
    s.mutable_token_gate()->set_s(1e-3);
    s.mutable_token_gate()->set_lambda(2e-4);
    const RunPlan plan = Plan(s);
    ASSERT_TRUE(plan.adapter.gate.has_value());
    EXPECT_DOUBLE_EQ(plan.adapter.gate->s, 1e-3);
    EXPECT_DOUBLE_EQ(plan.adapter.gate->lambda, 2e-4);
  };
  c["target_modules"] = [] {
    v1::JobSpec s = Base();
    s.add_target_modules("o_proj");
    s.add_target_modules("down_proj");
    EXPECT_EQ(Plan(s).adapter.targets.target_modules,
              (std::vector<std::string>{"o_proj", "down_proj"}));
  };
  c["exclude_modules"] = [] {
    v1::JobSpec s = Base();
    s.add_exclude_modules("model.layers.0.self_attn.q_proj");
    EXPECT_EQ(Plan(s).adapter.targets.exclude_modules,
              (std::vector<std::string>{"model.layers.0.self_attn.q_proj"}));
  };
  c["layers_to_transform"] = [] {
    v1::JobSpec s = Base();
    s.add_layers_to_transform(1);
    s.add_layers_to_transform(3);
    EXPECT_EQ(Plan(s).adapter.targets.layers_to_transform, (std::vector<int>{1, 3}));
  };
  c["task"] = [] {
    const RunPlan lm = Plan(Base());
    EXPECT_FALSE(lm.classification);
    EXPECT_EQ(lm.dataset.task, data::Task::kCausalLm);
    EXPECT_EQ(lm.adapter.task_type, "CAUSAL_LM");
    EXPECT_TRUE(lm.adapter.modules_to_save.empty());
    v1::JobSpec s = Base();
    s.set_task(v1::SEQ_CLS);
    s.set_num_labels(3);
    const RunPlan cls = Plan(s);
    EXPECT_TRUE(cls.classification);
    EXPECT_EQ(cls.dataset.task, data::Task::kSequenceClassification);
    EXPECT_EQ(cls.adapter.task_type, "SEQ_CLS");
    EXPECT_EQ(cls.adapter.modules_to_save, (std::vector<std::string>{"score"}));
    v1::JobSpec seq2seq = Base();
    seq2seq.set_task(v1::SEQ_2_SEQ_LM);
    const RunPlan s2s = Plan(seq2seq);
    EXPECT_FALSE(s2s.classification);
    EXPECT_FALSE(s2s.packing);
    EXPECT_EQ(s2s.dataset.task, data::Task::kSeq2SeqLm);
    EXPECT_EQ(s2s.adapter.task_type, "SEQ_2_SEQ_LM");
  };
  c["num_labels"] = [] {
    v1::JobSpec s = Base();
    s.set_task(v1::SEQ_CLS);
    s.set_num_labels(4);
    const RunPlan plan = Plan(s);
    EXPECT_EQ(plan.num_labels, 4);
    EXPECT_EQ(plan.dataset.num_labels, 4);
  };
  c["label_names"] = [] {
    v1::JobSpec s = Base();
    s.set_task(v1::SEQ_CLS);
    s.set_num_labels(2);
    s.add_label_names("neg");
    s.add_label_names("pos");
    EXPECT_EQ(Plan(s).dataset.label_names, (std::vector<std::string>{"neg", "pos"}));
  };
  c["chat_template"] = [] {
    v1::JobSpec s = Base();
    EXPECT_EQ(Plan(s).dataset.chat_template, "chatml");
    s.set_chat_template("llama3");
    EXPECT_EQ(Plan(s).dataset.chat_template, "llama3");
  };
  c["epochs"] = [] {
    v1::JobSpec s = Base();
    s.set_max_steps(0);
    s.set_epochs(3);
    s.set_batch_size(10);
    // 100 records / 10 = 10 batches per epoch, 3 epochs.
    EXPECT_EQ(Plan(s).trainer.total_steps, 30);
  };
  c["max_steps"] = [] {
    v1::JobSpec s = Base();
    s.set_max_steps(17);
    s.set_epochs(5);  // ignored when max_steps > 0
    const RunPlan plan = Plan(s);
    EXPECT_EQ(plan.trainer.total_steps, 17);
    EXPECT_EQ(plan.trainer.lr.total_steps, 17);
  };
  c["batch_size"] = [] {
    v1::JobSpec s = Base();
    s.set_batch_size(3);
    EXPECT_EQ(Plan(s).batch_size, 3);
    s.set_max_steps(0);
    EXPECT_EQ(Plan(s).trainer.total_steps, 34);  // ceil(100 / 3) batches
  };
  c["gradient_accumulation_steps"] = [] {
    v1::JobSpec s = Base();
    s.set_gradient_accumulation_steps(4);
    EXPECT_EQ(Plan(s).trainer.gradient_accumulation_steps, 4);
    s.set_max_steps(0);
    s.set_batch_size(10);
    EXPECT_EQ(Plan(s).trainer.total_steps, 2);  // 10 batches / 4, the partial window dropped
  };
  c["learning_rate"] = [] {
    v1::JobSpec s = Base();
    s.set_learning_rate(3e-3);
    EXPECT_DOUBLE_EQ(Plan(s).trainer.lr.peak_lr, 3e-3);
  };
  c["lr_schedule"] = [] {
    v1::JobSpec s = Base();
    EXPECT_EQ(Plan(s).trainer.lr.decay, train::LrDecay::kLinear);
    s.set_lr_schedule(v1::COSINE);
    EXPECT_EQ(Plan(s).trainer.lr.decay, train::LrDecay::kCosine);
    s.set_lr_schedule(v1::CONSTANT);
    EXPECT_EQ(Plan(s).trainer.lr.decay, train::LrDecay::kConstant);
  };
  c["warmup_ratio"] = [] {
    v1::JobSpec s = Base();
    s.set_warmup_ratio(0.11);
    EXPECT_EQ(Plan(s).trainer.lr.warmup_steps, 5);  // ceil(0.11 × 40)
  };
  c["warmup_steps"] = [] {
    v1::JobSpec s = Base();
    s.set_warmup_ratio(0.5);
    s.set_warmup_steps(3);  // wins over the ratio
    EXPECT_EQ(Plan(s).trainer.lr.warmup_steps, 3);
  };
  c["weight_decay"] = [] {
    v1::JobSpec s = Base();
    s.set_weight_decay(0.01);
    EXPECT_DOUBLE_EQ(Plan(s).trainer.adamw.weight_decay, 0.01);
  };
  c["max_grad_norm"] = [] {
    v1::JobSpec s = Base();
    EXPECT_DOUBLE_EQ(Plan(s).trainer.max_grad_norm, 1.0);
    s.set_max_grad_norm(0);
    EXPECT_DOUBLE_EQ(Plan(s).trainer.max_grad_norm, 0);
  };
  c["max_seq_len"] = [] {
    v1::JobSpec s = Base();
    s.set_max_seq_len(77);
    EXPECT_EQ(Plan(s).dataset.max_seq_len, 77);
  };
  c["max_target_len"] = [] {
    v1::JobSpec s = Base();
    s.set_task(v1::SEQ_2_SEQ_LM);
    s.set_max_target_len(33);
    EXPECT_EQ(Plan(s).dataset.max_target_len, 33);
  };
  c["truncate"] = [] {
    v1::JobSpec s = Base();
    EXPECT_TRUE(Plan(s).dataset.truncate);
    s.set_truncate(false);
    EXPECT_FALSE(Plan(s).dataset.truncate);
  };
  c["packing"] = [] {
    v1::JobSpec s = Base();
    EXPECT_TRUE(Plan(s).packing);  // the default for CAUSAL_LM
    s.set_packing(false);
    EXPECT_FALSE(Plan(s).packing);
    s.set_packing(true);
    s.set_task(v1::SEQ_CLS);
    s.set_num_labels(2);
    EXPECT_FALSE(Plan(s).packing);  // classification records are never packed
  };
  c["skip_bad_lines"] = [] {
    v1::JobSpec s = Base();
    s.set_skip_bad_lines(true);
    EXPECT_TRUE(Plan(s).dataset.skip_bad_lines);
  };
  c["seed"] = [] {
    v1::JobSpec s = Base();
    EXPECT_EQ(Plan(s).seed, 42u);
    s.set_seed(0);
    EXPECT_EQ(Plan(s).seed, 0u);
    EXPECT_EQ(Plan(s).trainer.seed, 0u);
    s.set_seed(1234);
    EXPECT_EQ(Plan(s).seed, 1234u);
  };
  c["eval_interval_steps"] = [] {
    v1::JobSpec s = Base();
    s.set_eval_interval_steps(6);
    EXPECT_EQ(Plan(s).trainer.eval_interval_steps, 6);
  };
  c["checkpoint_interval_steps"] = [] {
    v1::JobSpec s = Base();
    EXPECT_EQ(Plan(s).trainer.checkpoint_interval_steps, 50);
    s.set_checkpoint_interval_steps(9);
    EXPECT_EQ(Plan(s).trainer.checkpoint_interval_steps, 9);
  };
  c["early_stopping_patience"] = [] {
    v1::JobSpec s = Base();
    s.set_validation_dataset_id("valid.jsonl");
    s.set_early_stopping_patience(2);
    EXPECT_EQ(Plan(s).trainer.early_stopping_patience, 2);
  };
  c["num_threads"] = [] {
    v1::JobSpec s = Base();
    EXPECT_EQ(Plan(s).num_threads, 6);  // the hardware's
    s.set_num_threads(2);
    EXPECT_EQ(Plan(s).num_threads, 2);
  };
  return c;
}

// Fields the plan does not carry, and who reads them.
const std::set<std::string> kHandledElsewhere = {
    "training_dataset_id",    // the runner reads the file (JobInputs::training_data_path)
    "validation_dataset_id",  // likewise; without it no evaluation source is built
    "export_merged",          // the runner's export step
    "max_attempts",           // the server's retry policy
    "keep_checkpoints",       // the server trims old checkpoints
    "init_from",              // the server resolves it into Lease.init_from (worker/init_weights)
    "selection",              // the server writes the chosen modules into target_modules
    "workers",                // the server's gang placement; each lease's rank and world size
                              // reach the trainer through worker/gang_runner
};

TEST(SpecAdapter, EveryJobSpecFieldHasADestination) {
  const auto checks = FieldChecks();
  const google::protobuf::Descriptor* d = v1::JobSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const std::string name = d->field(i)->name();
    const bool known = checks.count(name) || kHandledElsewhere.count(name);
    EXPECT_TRUE(known) << "JobSpec." << name
                       << " is new: map it in worker/spec_adapter.cc and add a check here";
  }
}

TEST(SpecAdapter, EachFieldReachesThePlan) {
  for (const auto& [name, check] : FieldChecks()) {
    SCOPED_TRACE(name);
    check();
  }
}

TEST(SpecAdapter, TotalStepsFollowHfTrainer) {
  v1::JobSpec s = WithDefaults(Base());
  s.set_max_steps(0);
  s.set_batch_size(8);
  s.set_epochs(2);
  EXPECT_EQ(TotalSteps(s, 17), 6);  // 3 batches per epoch
  s.set_gradient_accumulation_steps(4);
  EXPECT_EQ(TotalSteps(s, 17), 2);  // fewer batches than one window: still one step per epoch
  EXPECT_EQ(TotalSteps(s, 0), 2);
}

TEST(SpecAdapter, AdaDhpTfinalDefaultsToEightyPercent) {
  const RunPlan plan = Plan(Base(v1::ADADHP));
  EXPECT_EQ(plan.adapter.adadhp.tfinal, 32);
  EXPECT_EQ(plan.adapter.adadhp.target_num, 0);  // half the adapted modules, resolved by Apply
}

TEST(SpecAdapter, ScheduleThatNeverPrunesNamesTheField) {
  v1::JobSpec s = Base(v1::ADALORA);
  s.set_max_steps(0);  // derived: 100 records / 8 = 13 steps; the server could not check it
  s.mutable_adalora()->set_tinit(10);
  s.mutable_adalora()->set_tfinal(5);
  const v1::JobSpec d = WithDefaults(s);
  ASSERT_TRUE(ValidateJobSpec(d).ok());
  absl::StatusOr<RunPlan> plan = PlanRun(d, kRecords, 1);
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message().rfind("adalora.tinit:", 0), 0u) << plan.status();

  v1::JobSpec h = Base(v1::ADADHP);
  h.mutable_adadhp()->set_tfinal(41);
  plan = PlanRun(WithDefaults(h), kRecords, 1);
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message().rfind("adadhp.tfinal:", 0), 0u) << plan.status();
}

}  // namespace
}  // namespace peftd::worker
