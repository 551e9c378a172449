#include "worker/console_progress.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/json_log_sink.h"

namespace peftd::worker {
namespace {

constexpr char kClearToEnd[] = "\x1b[K";

}  // namespace

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string ProgressLine(const train::StepMetrics& m, std::optional<double> eval_loss) {
  std::string line = absl::StrFormat(
      "step %d/%d  loss %.4f  eval %s  lr %.2e  %.0f tok/s", m.step, m.total_steps, m.loss,
      eval_loss ? absl::StrFormat("%.4f", *eval_loss) : "-", m.learning_rate, m.tokens_per_second);
  if (!m.gate_sparsity_by_module.empty()) {
    absl::StrAppendFormat(&line, "  sparsity %.3f", m.gate_sparsity);
  }
  if (!m.adalora_rank_by_module.empty()) {
    double sum = 0;
    for (const auto& [k, r] : m.adalora_rank_by_module) sum += static_cast<double>(r);
    absl::StrAppendFormat(&line, "  rank %.2f", sum / m.adalora_rank_by_module.size());
  }
  if (m.adadhp_active_modules >= 0) {
    absl::StrAppendFormat(&line, "  active %d", m.adadhp_active_modules);
  }
  absl::StrAppend(&line, "  ETA ",
                  m.step >= m.total_steps ? "0:00" : FormatDuration(m.eta_seconds));
  return line;
}

ConsoleProgress::ConsoleProgress(std::FILE* out, bool tty, int64_t every_steps)
    : out_(out), tty_(tty), every_(std::max<int64_t>(every_steps, 1)) {}

void ConsoleProgress::PrintLine(const std::string& text) {
  if (tty_ && !live_.empty()) {
    std::fprintf(out_, "\r%s%s\n%s", text.c_str(), kClearToEnd, live_.c_str());
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
}

void ConsoleProgress::OnPhase(train::Phase phase) {
  // Training, evaluation and checkpoint phases show in the lines of their own events.
  if (phase != train::Phase::kLoadingModel && phase != train::Phase::kExporting) return;
  std::lock_guard<std::mutex> lock(mu_);
  PrintLine(phase == train::Phase::kLoadingModel ? "loading the model and the datasets"
                                                 : "exporting");
}

void ConsoleProgress::OnStep(const train::StepMetrics& m) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string line = ProgressLine(m, eval_loss_);
  if (tty_) {
    live_ = line;
    std::fprintf(out_, "\r%s%s", line.c_str(), kClearToEnd);
    std::fflush(out_);
  } else if (m.step % every_ == 0 || m.step == m.total_steps || m.step == 1) {
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }
}

void ConsoleProgress::OnEval(const train::EvalMetrics& m) {
  std::lock_guard<std::mutex> lock(mu_);
  eval_loss_ = m.loss;
  std::string text = absl::StrFormat("eval at step %d: loss %.4f", m.step, m.loss);
  if (m.accuracy >= 0) absl::StrAppendFormat(&text, "  accuracy %.4f", m.accuracy);
  if (!m.gate_sparsity_by_module.empty()) {
    absl::StrAppendFormat(&text, "  sparsity %.3f", m.gate_sparsity);
  }
  PrintLine(text);
}

void ConsoleProgress::OnCheckpoint(int64_t step, const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  PrintLine(absl::StrCat("checkpoint of step ", step, " in ", dir));
}

void ConsoleProgress::OnLog(train::LogLevel level, const std::string& message) {
  if (level == train::LogLevel::kDebug) return;
  std::lock_guard<std::mutex> lock(mu_);
  PrintLine(level == train::LogLevel::kInfo ? message
                                            : absl::StrCat(LogLevelName(level), ": ", message));
}

void ConsoleProgress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (tty_ && !live_.empty()) {
    std::fprintf(out_, "\n");
    std::fflush(out_);
  }
  live_.clear();
}

}  // namespace peftd::worker
