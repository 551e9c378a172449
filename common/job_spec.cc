#include "common/job_spec.h"

#include <cmath>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"

namespace peftd {
namespace {

constexpr int kMaxKeepCheckpoints = 1000;

// Whether the spec's method_params (when set) belong to its method.
bool ParamsMatchMethod(const v1::JobSpec& s) {
  switch (s.method_params_case()) {
    case v1::JobSpec::METHOD_PARAMS_NOT_SET:
      return true;
    case v1::JobSpec::kLora:
      return s.method() == v1::LORA || s.method() == v1::DORA;
    case v1::JobSpec::kAdalora:
      return s.method() == v1::ADALORA;
    case v1::JobSpec::kHut:
      return s.method() == v1::HUT;
    case v1::JobSpec::kAdadhp:
      return s.method() == v1::ADADHP;
  }
  return false;
}

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

}  // namespace

v1::JobSpec WithDefaults(const v1::JobSpec& in) {
  v1::JobSpec s = in;
  // Mismatched parameters are left as they are for ValidateJobSpec to name.
  switch (ParamsMatchMethod(s) ? s.method() : v1::METHOD_UNSPECIFIED) {
    case v1::LORA:
    case v1::DORA: {
      auto* p = s.mutable_lora();
      if (p->r() == 0) p->set_r(8);
      if (p->alpha() == 0) p->set_alpha(16);
      break;
    }
    case v1::ADALORA: {
      auto* p = s.mutable_adalora();
      if (p->init_r() == 0) p->set_init_r(12);
      if (p->target_r() == 0) p->set_target_r(8);
      if (p->alpha() == 0) p->set_alpha(32);
      if (p->delta_t() == 0) p->set_delta_t(1);
      if (p->beta1() == 0) p->set_beta1(0.85f);
      if (p->beta2() == 0) p->set_beta2(0.85f);
      if (p->orth_reg_weight() == 0) p->set_orth_reg_weight(0.5f);
      break;
    }
    case v1::HUT: {
      auto* p = s.mutable_hut();
      if (p->r() == 0) p->set_r(8);
      break;
    }
    case v1::ADADHP: {
      auto* p = s.mutable_adadhp();
      if (p->delta_t() == 0) p->set_delta_t(10);
      if (p->beta1() == 0) p->set_beta1(0.85f);
      if (p->beta2() == 0) p->set_beta2(0.85f);
      break;
    }
    default:
      break;
  }
  if (s.token_gate().enabled()) {
    auto* g = s.mutable_token_gate();
    if (g->s() == 0) g->set_s(4e-5);
    if (g->lambda() == 0) g->set_lambda(1e-6);
  }
  if (s.target_modules().empty()) {
    s.add_target_modules("q_proj");
    s.add_target_modules("v_proj");
  }
  if (s.task() == v1::TASK_TYPE_UNSPECIFIED) s.set_task(v1::CAUSAL_LM);
  if (s.chat_template().empty()) s.set_chat_template("chatml");
  if (s.epochs() == 0) s.set_epochs(1);
  if (s.batch_size() == 0) s.set_batch_size(8);
  if (s.gradient_accumulation_steps() == 0) s.set_gradient_accumulation_steps(1);
  if (s.learning_rate() == 0) s.set_learning_rate(2e-4);
  if (s.lr_schedule() == v1::LR_SCHEDULE_UNSPECIFIED) s.set_lr_schedule(v1::LINEAR);
  if (!s.has_max_grad_norm()) s.set_max_grad_norm(1.0);
  if (s.max_seq_len() == 0) s.set_max_seq_len(512);
  if (!s.has_truncate()) s.set_truncate(true);
  if (!s.has_seed()) s.set_seed(42);
  if (s.checkpoint_interval_steps() == 0) s.set_checkpoint_interval_steps(50);
  if (s.max_attempts() == 0) s.set_max_attempts(3);
  if (s.keep_checkpoints() == 0) s.set_keep_checkpoints(3);
  return s;
}

absl::Status ValidateJobSpec(const v1::JobSpec& s) {
  if (s.base_model().empty()) return FieldError("base_model", "required");
  if (s.method() == v1::METHOD_UNSPECIFIED || !v1::Method_IsValid(s.method())) {
    return FieldError("method", "required: one of LORA, DORA, ADALORA, HUT, ADADHP");
  }
  if (!ParamsMatchMethod(s)) {
    return FieldError("method_params", absl::StrCat("parameters do not belong to method ",
                                                    v1::Method_Name(s.method())));
  }
  if (s.has_lora()) {
    const auto& p = s.lora();
    if (p.r() < 1) return FieldError("lora.r", absl::StrCat("must be >= 1, got ", p.r()));
    if (!(p.alpha() > 0)) return FieldError("lora.alpha", "must be > 0");
    if (!(p.dropout() >= 0 && p.dropout() < 1))
      return FieldError("lora.dropout", "must be in [0, 1)");
  }
  if (s.has_adalora()) {
    const auto& p = s.adalora();
    if (p.init_r() < 1) return FieldError("adalora.init_r", "must be >= 1");
    if (p.target_r() < 0 || p.target_r() > p.init_r()) {
      return FieldError("adalora.target_r", absl::StrCat("must be in [0, init_r = ", p.init_r(),
                                                         "], got ", p.target_r()));
    }
    if (!(p.alpha() > 0)) return FieldError("adalora.alpha", "must be > 0");
    if (!(p.dropout() >= 0 && p.dropout() < 1))
      return FieldError("adalora.dropout", "must be in [0, 1)");
    if (p.tinit() < 0) return FieldError("adalora.tinit", "must be >= 0");
    if (p.tfinal() < 0) return FieldError("adalora.tfinal", "must be >= 0");
    if (p.delta_t() < 1) return FieldError("adalora.delta_t", "must be >= 1");
    if (!(p.beta1() > 0 && p.beta1() < 1)) return FieldError("adalora.beta1", "must be in (0, 1)");
    if (!(p.beta2() > 0 && p.beta2() < 1)) return FieldError("adalora.beta2", "must be in (0, 1)");
    if (p.orth_reg_weight() < 0) return FieldError("adalora.orth_reg_weight", "must be >= 0");
    if (s.max_steps() > 0 && p.tinit() >= s.max_steps() - p.tfinal()) {
      return FieldError("adalora.tinit",
                        absl::StrCat("tinit (", p.tinit(), ") must be < max_steps - tfinal (",
                                     s.max_steps() - p.tfinal(), "): no step would prune"));
    }
  }
  if (s.has_hut() && s.hut().r() < 1) return FieldError("hut.r", "must be >= 1");
  if (s.has_adadhp()) {
    const auto& p = s.adadhp();
    if (p.target_num() < 0) return FieldError("adadhp.target_num", "must be >= 0");
    if (p.tinit() < 0) return FieldError("adadhp.tinit", "must be >= 0");
    if (p.delta_t() < 1) return FieldError("adadhp.delta_t", "must be >= 1");
    if (p.tfinal() != 0 && p.tfinal() <= p.tinit()) {
      return FieldError("adadhp.tfinal", absl::StrCat("must be > tinit (", p.tinit(), ")"));
    }
    if (!(p.beta1() > 0 && p.beta1() < 1)) return FieldError("adadhp.beta1", "must be in (0, 1)");
    if (!(p.beta2() > 0 && p.beta2() < 1)) return FieldError("adadhp.beta2", "must be in (0, 1)");
  }
  if (s.token_gate().enabled()) {
    if (!(s.token_gate().s() > 0)) return FieldError("token_gate.s", "must be > 0");
    if (!(s.token_gate().lambda() >= 0)) return FieldError("token_gate.lambda", "must be >= 0");
  }
  for (int i = 0; i < s.target_modules_size(); ++i) {
    const std::string& t = s.target_modules(i);
    const std::string field = absl::StrCat("target_modules[", i, "]");
    if (t.empty()) return FieldError(field, "empty module name");
    if (t.rfind("re:", 0) == 0) {
      try {
        std::regex re(t.substr(3));
      } catch (const std::regex_error& e) {
        return FieldError(field, absl::StrCat("bad regex: ", e.what()));
      }
    }
  }
  for (int i = 0; i < s.layers_to_transform_size(); ++i) {
    if (s.layers_to_transform(i) < 0) {
      return FieldError(absl::StrCat("layers_to_transform[", i, "]"), "must be >= 0");
    }
  }
  if (s.task() == v1::SEQ_CLS) {
    if (s.num_labels() < 2) return FieldError("num_labels", "SEQ_CLS needs num_labels >= 2");
    if (s.label_names_size() != 0 && s.label_names_size() != s.num_labels()) {
      return FieldError("label_names", absl::StrCat("has ", s.label_names_size(),
                                                    " names for num_labels = ", s.num_labels()));
    }
  }
  if (s.training_dataset_id().empty()) return FieldError("training_dataset_id", "required");
  if (const auto& t = s.chat_template(); t != "chatml" && t != "llama3" && t != "plain") {
    return FieldError("chat_template",
                      absl::StrCat("unknown template '", t, "' (known: chatml, llama3, plain)"));
  }
  if (s.epochs() < 1) return FieldError("epochs", "must be >= 1");
  if (s.max_steps() < 0) return FieldError("max_steps", "must be >= 0");
  if (s.batch_size() < 1) return FieldError("batch_size", "must be >= 1");
  if (s.gradient_accumulation_steps() < 1)
    return FieldError("gradient_accumulation_steps", "must be >= 1");
  if (!(s.learning_rate() > 0) || !std::isfinite(s.learning_rate())) {
    return FieldError("learning_rate", "must be a finite number > 0");
  }
  if (!(s.warmup_ratio() >= 0 && s.warmup_ratio() < 1))
    return FieldError("warmup_ratio", "must be in [0, 1)");
  if (s.warmup_steps() < 0) return FieldError("warmup_steps", "must be >= 0");
  if (!(s.weight_decay() >= 0)) return FieldError("weight_decay", "must be >= 0");
  if (!(s.max_grad_norm() >= 0))
    return FieldError("max_grad_norm", "must be >= 0 (0 disables clipping)");
  if (s.max_seq_len() < 2) return FieldError("max_seq_len", "must be >= 2");
  if (s.eval_interval_steps() < 0) return FieldError("eval_interval_steps", "must be >= 0");
  if (s.checkpoint_interval_steps() < 0)
    return FieldError("checkpoint_interval_steps", "must be >= 0");
  if (s.max_attempts() < 1) return FieldError("max_attempts", "must be >= 1");
  if (s.num_threads() < 0) return FieldError("num_threads", "must be >= 0");
  if (s.keep_checkpoints() < 1 || s.keep_checkpoints() > kMaxKeepCheckpoints) {
    return FieldError("keep_checkpoints", absl::StrCat("must be in [1, ", kMaxKeepCheckpoints,
                                                       "], got ", s.keep_checkpoints()));
  }
  if (s.early_stopping_patience() < 0) return FieldError("early_stopping_patience", "must be >= 0");
  if (s.early_stopping_patience() > 0 && s.validation_dataset_id().empty()) {
    return FieldError("early_stopping_patience", "needs validation_dataset_id");
  }
  if (s.export_merged() && s.token_gate().enabled()) {
    return FieldError("export_merged", "a gated adapter cannot be merged into the base weights");
  }
  return absl::OkStatus();
}

}  // namespace peftd
