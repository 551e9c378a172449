#include "clients/cli/jobs_view.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/cli/format.h"
#include "clients/cli/progress_bar.h"

namespace peftd::cli {
namespace {

double Seconds(const google::protobuf::Timestamp& t) { return t.seconds() + t.nanos() * 1e-9; }
bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

std::string StepText(const v1::JobProgress& p) {
  if (p.total_steps() > 0) return absl::StrCat(p.step(), "/", p.total_steps());
  return p.step() > 0 ? std::to_string(p.step()) : "-";
}

std::string Labels(const v1::Job& job) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : job.labels()) parts.push_back(k + "=" + v);
  std::sort(parts.begin(), parts.end());
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

// "...: train.jsonl: 3 bad lines: line 1: ...; line 2: ...; shorten ..." as one bad line a line
// (indented under the head), so that a long list reads as a list.
std::string ListBadLines(const std::string& message) {
  size_t head_end = std::string::npos;
  for (absl::string_view marker : {" bad lines: ", " bad line: "}) {
    const size_t at = absl::string_view(message).find(marker);
    if (at != std::string::npos) head_end = at + marker.size() - 2;  // keep "bad lines"
  }
  if (head_end == std::string::npos) return message;
  std::string text = message.substr(0, head_end);
  std::string item;
  for (absl::string_view part : absl::StrSplit(message.substr(head_end + 2), "; ")) {
    // A reason may hold "; " itself: only a new "line N:" or the closing advice starts a line.
    const bool starts = absl::StartsWith(part, "line ") || absl::StartsWith(part, "and ") ||
                        absl::StartsWith(part, "shorten ") || absl::StartsWith(part, "fix ");
    if (starts && !item.empty()) {
      absl::StrAppend(&text, "\n    ", item);
      item.clear();
    }
    absl::StrAppend(&item, item.empty() ? "" : "; ", part);
  }
  if (!item.empty()) absl::StrAppend(&text, "\n    ", item);
  return text;
}

std::string ErrorText(const v1::JobError& e) {
  std::string text = ListBadLines(e.message());
  if (!e.field().empty()) absl::StrAppend(&text, " (field ", e.field(), ")");
  if (e.line() > 0) absl::StrAppend(&text, " (line ", e.line(), ")");
  return text;
}

}  // namespace

std::string StateWithPhase(v1::JobState state, v1::JobPhase phase) {
  std::string text = StateName(state);
  if ((state == v1::RUNNING || state == v1::CANCELLING) && phase != v1::JOB_PHASE_UNSPECIFIED) {
    absl::StrAppend(&text, "/", PhaseName(phase));
  }
  return text;
}

std::string MethodLabel(const v1::JobSpec& spec) {
  std::string name = MethodName(spec.method());
  if (spec.token_gate().enabled() && spec.method() != v1::METHOD_UNSPECIFIED) name += "_s";
  return name;
}

std::vector<std::string> JobListHeader() {
  return {"ID", "NAME", "STATE", "METHOD", "STEP", "LOSS", "AGE"};
}

std::vector<std::string> JobListRow(const v1::Job& job, absl::Time now) {
  const auto& p = job.progress();
  return {job.id(),
          job.display_name().empty() ? "-" : job.display_name(),
          StateWithPhase(job.state(), job.phase()),
          MethodLabel(job.spec()),
          StepText(p),
          FormatLoss(p.train_loss(), p.step() > 0),
          FormatAge(job.create_time(), now)};
}

std::string FormatJobDetails(const v1::Job& job, absl::Time now) {
  const auto& spec = job.spec();
  const auto& p = job.progress();
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::string& key, const std::string& value) {
    rows.push_back({key + ":", value});
  };
  add("id", job.id());
  if (!job.display_name().empty()) add("name", job.display_name());
  add("state", StateWithPhase(job.state(), job.phase()));
  // Attempts lost while the job made checkpoint progress cost nothing, so the attempt number can
  // pass max_attempts: what is limited is the attempts charged (docs/concepts.md).
  const int max_attempts = spec.max_attempts() > 0 ? spec.max_attempts() : 3;
  add("attempt", absl::StrCat(job.attempt(), " (", job.attempts_charged(), " of ", max_attempts,
                              " lost without progress)"));
  add("model", spec.base_model().empty() ? "-" : spec.base_model());
  add("method", MethodLabel(spec));
  add("task", spec.task() == v1::SEQ_CLS ? absl::StrCat("seq_cls (", spec.num_labels(), " labels)")
              : spec.task() == v1::SEQ_2_SEQ_LM ? std::string("seq_2_seq_lm")
                                                : std::string("causal_lm"));
  add("train", spec.training_dataset_id().empty() ? "-" : spec.training_dataset_id());
  if (!spec.validation_dataset_id().empty()) add("validation", spec.validation_dataset_id());
  add("labels", Labels(job));
  if (!job.request_id().empty()) add("request id", job.request_id());
  const ProgressStyle style = StyleOf(job);
  if (p.step() == 0 && p.total_steps() == 0) {
    add("progress", job.state() == v1::RUNNING ? "no step reported yet (the worker is starting)"
                    : IsFinal(job.state())     ? "no step was reported"
                                               : "not started");
  } else {
    add("progress", SummarizeProgress(p, style));
  }
  if (style.gated) {
    // token-gate.md reads the gate by these two numbers; 0% sparsity is worth seeing too.
    add("gate", absl::StrFormat("sparsity %.1f%% (token-weighted %.1f%%), mean tau %.3g over %d "
                                "modules",
                                p.gate_sparsity() * 100, p.gate_token_sparsity() * 100, MeanTau(p),
                                p.gates_size()));
  }
  if (p.learning_rate() > 0) add("learning rate", absl::StrFormat("%.3g", p.learning_rate()));
  if (p.tokens_seen() > 0) add("tokens seen", FormatCount(static_cast<double>(p.tokens_seen())));
  if (job.trainable_parameters() > 0) {
    double pct = job.total_parameters() > 0
                     ? 100.0 * job.trainable_parameters() / job.total_parameters()
                     : 0;
    add("trainable",
        absl::StrFormat("%s of %s parameters (%.3f%%)",
                        FormatCount(static_cast<double>(job.trainable_parameters())),
                        FormatCount(static_cast<double>(job.total_parameters())), pct));
  }
  if (!job.worker_id().empty()) add("worker", job.worker_id());
  if (spec.workers() > 1) {
    const int64_t per_rank =
        int64_t{spec.batch_size()} * std::max(1, spec.gradient_accumulation_steps());
    add("workers", absl::StrCat(spec.workers(), " ranks (global batch ", spec.batch_size(), " x ",
                                std::max(1, spec.gradient_accumulation_steps()), " x ",
                                spec.workers(), " = ", per_rank * spec.workers(), " sequences)"));
    for (int r = 0; r < job.rank_worker_ids_size(); ++r) {
      std::string text = job.rank_worker_ids(r);
      if (r < p.rank_step_seconds_size() && p.rank_step_seconds(r) > 0) {
        absl::StrAppend(&text, absl::StrFormat(", step %.3fs", p.rank_step_seconds(r)));
      }
      if (r < p.rank_allreduce_seconds_size()) {
        absl::StrAppend(&text, absl::StrFormat(", allreduce %.3fs", p.rank_allreduce_seconds(r)));
      }
      add(absl::StrCat("rank ", r), text);
    }
  }
  if (!job.waiting_reason().empty() && job.state() == v1::QUEUED) {
    add("waiting", job.waiting_reason());
  }
  add("created", absl::StrCat(FormatTime(job.create_time()), " (",
                              FormatAge(job.create_time(), now), " ago)"));
  if (IsSet(job.start_time())) add("started", FormatTime(job.start_time()));
  if (IsSet(job.end_time())) {
    std::string ended = FormatTime(job.end_time());
    if (IsSet(job.start_time())) {
      absl::StrAppend(&ended, " (ran ",
                      FormatDuration(Seconds(job.end_time()) - Seconds(job.start_time())), ")");
    }
    add("ended", ended);
  }
  if (job.checkpoints_size() > 0) {
    const auto& last = job.checkpoints(job.checkpoints_size() - 1);
    add("checkpoints", absl::StrCat(job.checkpoints_size(), " (newest at step ", last.step(), ")"));
  }
  if (!job.adapter_sha256().empty()) {
    add("adapter",
        absl::StrCat(FormatBytes(job.adapter_size_bytes()), ", sha256 ", job.adapter_sha256()));
  }
  if (spec.export_merged()) {
    add("merged model", job.state() == v1::SUCCEEDED
                            ? absl::StrCat("yes: peftctl download ", job.id(), " --merged")
                            : "requested (export_merged)");
  }
  if (job.state() == v1::FAILED) {
    add("error", ErrorText(job.error()));
    if (job.error().blame() != v1::JobError::BLAME_UNSPECIFIED) {
      add("blame", job.error().blame() == v1::JobError::USER ? "user (fix the spec or data)"
                                                             : "system (retrying may help)");
    }
  }
  return FormatTable(rows);
}

std::string FormatEventLine(const v1::JobEvent& e) {
  std::string level =
      e.level() == v1::JobEvent::LEVEL_UNSPECIFIED ? "INFO" : v1::JobEvent::Level_Name(e.level());
  // The id is what `events --after` and `watch --after` take.
  std::string line = absl::StrFormat("%s  #%-5d  %-7s  %s", FormatTime(e.time()), e.id(), level,
                                     StateWithPhase(e.state(), e.phase()));
  // A progress event's message is the server's text of the same progress ("TRAINING step 20/100
  // loss ..."): the summary says it better. Warnings keep theirs.
  const bool progress_only = e.has_progress() && e.level() < v1::JobEvent::WARNING;
  if (!e.message().empty() && !progress_only) absl::StrAppend(&line, "  ", e.message());
  if (e.has_progress()) {
    ProgressStyle style;
    style.live = e.state() == v1::RUNNING;
    absl::StrAppend(&line, "  ", SummarizeProgress(e.progress(), style));
  }
  return line;
}

std::string FormatOutcome(const v1::Job& job) {
  const auto& p = job.progress();
  std::string took;
  if (IsSet(job.start_time()) && IsSet(job.end_time())) {
    took = " in " + FormatDuration(Seconds(job.end_time()) - Seconds(job.start_time()));
  }
  switch (job.state()) {
    case v1::SUCCEEDED: {
      std::string text = absl::StrCat("job ", job.id(), " succeeded", took, ": ", StepText(p),
                                      " steps, loss ", FormatLoss(p.train_loss(), p.step() > 0));
      if (p.has_eval()) absl::StrAppend(&text, ", eval loss ", FormatLoss(p.eval_loss()));
      if (job.spec().task() == v1::SEQ_CLS && p.has_eval()) {
        absl::StrAppend(&text, absl::StrFormat(", eval accuracy %.1f%%", p.eval_accuracy() * 100));
      }
      if (job.spec().token_gate().enabled()) {
        absl::StrAppend(&text, absl::StrFormat(", gate sparsity %.1f%% (mean tau %.3g)",
                                               p.gate_sparsity() * 100, MeanTau(p)));
      }
      absl::StrAppend(&text, "\n  next: peftctl download ", job.id());
      return text;
    }
    case v1::FAILED: {
      std::string text = absl::StrCat("job ", job.id(), " failed", took, " (attempt ",
                                      job.attempt(), "): ", ErrorText(job.error()));
      if (job.error().blame() == v1::JobError::USER) {
        absl::StrAppend(&text, "\n  the spec or the data is at fault: fix it and submit again");
      } else if (job.error().blame() == v1::JobError::SYSTEM) {
        absl::StrAppend(&text, "\n  an infrastructure failure: submitting again may succeed");
      }
      absl::StrAppend(&text, "\n  details: peftctl events ", job.id());
      return text;
    }
    case v1::CANCELLED:
      if (p.step() == 0)
        return absl::StrCat("job ", job.id(), " cancelled before training started");
      return absl::StrCat("job ", job.id(), " cancelled at step ", StepText(p));
    default:
      return absl::StrCat("job ", job.id(), " is ", StateWithPhase(job.state(), job.phase()));
  }
}

}  // namespace peftd::cli
