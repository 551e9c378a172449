#include "worker/spec_adapter.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace peftd::worker {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

train::LrDecay Decay(v1::LrSchedule schedule) {
  switch (schedule) {
    case v1::COSINE:
      return train::LrDecay::kCosine;
    case v1::CONSTANT:
      return train::LrDecay::kConstant;
    default:
      return train::LrDecay::kLinear;
  }
}

adapters::MethodKind Method(v1::Method method) {
  switch (method) {
    case v1::DORA:
      return adapters::MethodKind::kDora;
    case v1::ADALORA:
      return adapters::MethodKind::kAdaLora;
    case v1::HUT:
      return adapters::MethodKind::kHut;
    case v1::ADADHP:
      return adapters::MethodKind::kAdaDhp;
    default:
      return adapters::MethodKind::kLora;
  }
}

}  // namespace

data::DatasetOptions DatasetOptionsFromSpec(const v1::JobSpec& spec) {
  data::DatasetOptions o;
  o.task = spec.task() == v1::SEQ_CLS        ? data::Task::kSequenceClassification
           : spec.task() == v1::SEQ_2_SEQ_LM ? data::Task::kSeq2SeqLm
                                             : data::Task::kCausalLm;
  o.max_seq_len = spec.max_seq_len();
  if (spec.task() == v1::SEQ_2_SEQ_LM) o.max_target_len = spec.max_target_len();
  o.truncate = spec.truncate();
  o.skip_bad_lines = spec.skip_bad_lines();
  o.chat_template = spec.chat_template();
  o.num_labels = spec.task() == v1::SEQ_CLS ? spec.num_labels() : 0;
  o.label_names.assign(spec.label_names().begin(), spec.label_names().end());
  o.num_threads = spec.num_threads();
  return o;
}

int64_t TotalSteps(const v1::JobSpec& spec, int64_t train_records) {
  if (spec.max_steps() > 0) return spec.max_steps();
  const int64_t batch = std::max<int32_t>(spec.batch_size(), 1);
  const int64_t accumulation = std::max<int32_t>(spec.gradient_accumulation_steps(), 1);
  const int64_t batches_per_epoch = (std::max<int64_t>(train_records, 0) + batch - 1) / batch;
  const int64_t steps_per_epoch = std::max<int64_t>(batches_per_epoch / accumulation, 1);
  return steps_per_epoch * std::max<int32_t>(spec.epochs(), 1);
}

absl::StatusOr<RunPlan> PlanRun(const v1::JobSpec& spec, int64_t train_records,
                                int hardware_threads) {
  RunPlan plan;
  const int64_t total = TotalSteps(spec, train_records);
  plan.classification = spec.task() == v1::SEQ_CLS;
  plan.num_labels = plan.classification ? spec.num_labels() : 0;
  plan.packing = spec.task() == v1::CAUSAL_LM && spec.packing();
  plan.batch_size = spec.batch_size();
  plan.seed = spec.seed();
  plan.num_threads = spec.num_threads() > 0 ? spec.num_threads() : std::max(hardware_threads, 1);
  plan.dataset = DatasetOptionsFromSpec(spec);

  adapters::AdapterConfig& a = plan.adapter;
  a.method = Method(spec.method());
  a.base_model_name_or_path = spec.base_model();
  a.task_type = plan.classification               ? "SEQ_CLS"
                : spec.task() == v1::SEQ_2_SEQ_LM ? "SEQ_2_SEQ_LM"
                                                  : "CAUSAL_LM";
  if (plan.classification) a.modules_to_save = {"score"};
  a.targets.target_modules.assign(spec.target_modules().begin(), spec.target_modules().end());
  a.targets.exclude_modules.assign(spec.exclude_modules().begin(), spec.exclude_modules().end());
  a.targets.layers_to_transform.assign(spec.layers_to_transform().begin(),
                                       spec.layers_to_transform().end());
  if (spec.has_lora()) {
    const v1::LoraParams& p = spec.lora();
    a.lora.r = p.r();
    a.lora.alpha = p.alpha();
    a.lora.dropout = p.dropout();
    a.lora.use_rslora = p.use_rslora();
    a.lora.gaussian_init = p.gaussian_init();
  }
  if (spec.has_adalora()) {
    const v1::AdaLoraParams& p = spec.adalora();
    a.adalora.init_r = p.init_r();
    a.adalora.alpha = p.alpha();
    a.adalora.dropout = p.dropout();
    adapters::AdaLoraSchedule& s = a.adalora_schedule;
    s.init_r = p.init_r();
    s.target_r = p.target_r();
    s.tinit = p.tinit();
    s.tfinal = p.tfinal();
    s.delta_t = p.delta_t();
    s.beta1 = p.beta1();
    s.beta2 = p.beta2();
    s.orth_reg_weight = p.orth_reg_weight();
    s.total_step = total;
    // METHODS.md, AdaLoRA budget: the pruning window (tinit, T - tfinal] must not be empty.
    if (p.tinit() >= total - p.tfinal()) {
      return FieldError("adalora.tinit",
                        absl::StrCat("tinit (", p.tinit(), ") must be < total steps - tfinal (",
                                     total, " - ", p.tfinal(), " = ", total - p.tfinal(),
                                     "): no step would prune; lower tinit/tfinal or train longer"));
    }
  }
  if (spec.has_hut()) a.hut.r = spec.hut().r();
  if (spec.has_adadhp()) {
    const v1::AdaDhpParams& p = spec.adadhp();
    a.adadhp.target_num = p.target_num();
    a.adadhp.tinit = p.tinit();
    // job.proto: tfinal defaults to 80% of the total steps (and stays after tinit).
    a.adadhp.tfinal = p.tfinal() > 0 ? p.tfinal() : std::max<int64_t>(p.tinit() + 1, total * 4 / 5);
    a.adadhp.delta_t = p.delta_t();
    a.adadhp.beta1 = p.beta1();
    a.adadhp.beta2 = p.beta2();
    if (a.adadhp.tfinal > total) {
      return FieldError("adadhp.tfinal",
                        absl::StrCat("step ", a.adadhp.tfinal, " is past the run's last step (",
                                     total, "): the module budget would never reach target_num"));
    }
  }
  if (spec.token_gate().enabled()) {
    adapters::GateOptions g;
    g.s = spec.token_gate().s();
    g.lambda = spec.token_gate().lambda();
    a.gate = g;
  }

  train::TrainerOptions& t = plan.trainer;
  t.total_steps = total;
  t.gradient_accumulation_steps = spec.gradient_accumulation_steps();
  t.lr.peak_lr = spec.learning_rate();
  t.lr.total_steps = total;
  t.lr.decay = Decay(spec.lr_schedule());
  // HF TrainingArguments.get_warmup_steps: warmup_steps wins, else ceil(ratio × total).
  t.lr.warmup_steps = spec.warmup_steps() > 0
                          ? spec.warmup_steps()
                          : static_cast<int64_t>(std::ceil(spec.warmup_ratio() * total));
  t.adamw.weight_decay = spec.weight_decay();
  t.max_grad_norm = spec.max_grad_norm();
  t.eval_interval_steps = spec.eval_interval_steps();
  t.checkpoint_interval_steps = spec.checkpoint_interval_steps();
  t.early_stopping_patience = spec.early_stopping_patience();
  t.seed = spec.seed();
  return plan;
}

}  // namespace peftd::worker
