#include "worker/progress_reporter.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace peftd::worker {
namespace {

v1::JobPhase ToProtoPhase(train::Phase phase) {
  switch (phase) {
    case train::Phase::kLoadingModel:
      return v1::LOADING_MODEL;
    case train::Phase::kTraining:
      return v1::TRAINING;
    case train::Phase::kEvaluating:
      return v1::EVALUATING;
    case train::Phase::kCheckpointing:
      return v1::CHECKPOINTING;
    case train::Phase::kExporting:
      return v1::EXPORTING;
  }
  return v1::JOB_PHASE_UNSPECIFIED;
}

v1::JobEvent::Level ToProtoLevel(train::LogLevel level) {
  switch (level) {
    case train::LogLevel::kDebug:
      return v1::JobEvent::DEBUG;
    case train::LogLevel::kInfo:
      return v1::JobEvent::INFO;
    case train::LogLevel::kWarning:
      return v1::JobEvent::WARNING;
    case train::LogLevel::kError:
      return v1::JobEvent::ERROR;
  }
  return v1::JobEvent::INFO;
}

}  // namespace

ProgressReporter::ProgressReporter(JobReport* report, Hooks hooks)
    : job_(report), hooks_(std::move(hooks)) {}

void ProgressReporter::OnPhase(train::Phase phase) {
  bool changed;
  {
    std::lock_guard<std::mutex> lock(job_->mu);
    changed = job_->report.phase() != ToProtoPhase(phase);
    job_->report.set_phase(ToProtoPhase(phase));
  }
  if (changed && hooks_.phase_changed) hooks_.phase_changed();
}

void ProgressReporter::OnStep(const train::StepMetrics& m) {
  std::lock_guard<std::mutex> lock(job_->mu);
  v1::JobProgress* p = job_->report.mutable_progress();
  p->set_step(m.step);
  p->set_total_steps(m.total_steps);
  p->set_epoch(m.epoch);
  p->set_tokens_seen(m.tokens_seen);
  p->set_eta_seconds(m.eta_seconds);
  p->set_train_loss(m.loss);
  p->set_learning_rate(m.learning_rate);
  p->set_grad_norm(m.grad_norm);
  p->set_tokens_per_second(m.tokens_per_second);
  p->set_gate_sparsity(m.gate_sparsity);
  p->set_gate_token_sparsity(m.gate_token_sparsity);
  p->clear_gates();
  for (const auto& [module, sparsity] : m.gate_sparsity_by_module) {
    auto* g = p->add_gates();
    g->set_module(module);
    g->set_sparsity(sparsity);
    auto tau = m.gate_tau_by_module.find(module);
    if (tau != m.gate_tau_by_module.end()) g->set_tau(tau->second);
    auto tokens = m.gate_token_sparsity_by_module.find(module);
    if (tokens != m.gate_token_sparsity_by_module.end()) g->set_token_sparsity(tokens->second);
  }
  p->clear_adalora_ranks();
  for (const auto& [module, rank] : m.adalora_rank_by_module) {
    auto* r = p->add_adalora_ranks();
    r->set_module(module);
    r->set_rank(static_cast<int32_t>(rank));
  }
  if (m.adadhp_active_modules >= 0) p->set_adadhp_active_modules(m.adadhp_active_modules);
  p->clear_module_norms();
  for (const auto& [module, n] : m.module_norms) {
    auto* s = p->add_module_norms();
    s->set_module(module);
    s->set_relative(n.relative);
    s->set_absolute(n.absolute);
    s->set_tokens(n.tokens);
  }
  job_->report.add_step_durations_seconds(m.step_seconds);
}

void ProgressReporter::OnEval(const train::EvalMetrics& m) {
  {
    std::lock_guard<std::mutex> lock(job_->mu);
    v1::JobProgress* p = job_->report.mutable_progress();
    p->set_eval_loss(m.loss);
    p->set_has_eval(true);
    if (m.accuracy >= 0) p->set_eval_accuracy(m.accuracy);
  }
  OnLog(train::LogLevel::kInfo,
        absl::StrCat("eval at step ", m.step, ": loss ", m.loss,
                     m.accuracy >= 0 ? absl::StrCat(", accuracy ", m.accuracy) : ""));
}

void ProgressReporter::OnCheckpoint(int64_t step, const std::string& dir) {
  if (!hooks_.checkpoint) return;
  absl::Status st = hooks_.checkpoint(step, dir);
  if (!st.ok()) {
    OnLog(train::LogLevel::kWarning,
          absl::StrCat("checkpoint of step ", step, " was not uploaded: ", st.message()));
  }
}

void ProgressReporter::OnLog(train::LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> lock(job_->mu);
  v1::JobEvent* e = job_->report.add_events();
  e->set_level(ToProtoLevel(level));
  e->set_message(message);
  e->set_phase(job_->report.phase());  // the server keeps it: delivery may be phases later
  *e->mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
}

// Not MergeFrom: it would also append the repeated fields of the progress, such as the gates.
void RestoreUndelivered(const v1::ProgressReport& sent, v1::ProgressReport* report) {
  v1::ProgressReport merged = *report;
  merged.clear_events();
  for (const auto& e : sent.events()) *merged.add_events() = e;
  for (const auto& e : report->events()) *merged.add_events() = e;
  merged.clear_step_durations_seconds();
  for (double d : sent.step_durations_seconds()) merged.add_step_durations_seconds(d);
  for (double d : report->step_durations_seconds()) merged.add_step_durations_seconds(d);
  *report = std::move(merged);
}

}  // namespace peftd::worker
