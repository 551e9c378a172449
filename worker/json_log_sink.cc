#include "worker/json_log_sink.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace peftd::worker {

using nlohmann::json;

const char* LogLevelName(train::LogLevel level) {
  switch (level) {
    case train::LogLevel::kDebug:
      return "debug";
    case train::LogLevel::kInfo:
      return "info";
    case train::LogLevel::kWarning:
      return "warning";
    case train::LogLevel::kError:
      return "error";
  }
  return "info";
}

absl::StatusOr<std::unique_ptr<JsonLogSink>> JsonLogSink::Open(const std::string& path,
                                                               bool append) {
  std::FILE* f = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f) {
    return absl::FailedPreconditionError(
        absl::StrCat("--json-log ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<JsonLogSink>(new JsonLogSink(f));
}

JsonLogSink::~JsonLogSink() {
  if (file_) std::fclose(file_);
}

void JsonLogSink::Write(const std::string& type, json fields) {
  json line = {{"type", type}, {"time", absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch())}};
  for (auto& [k, v] : fields.items()) line[k] = v;
  // Doubles are written with 17 significant digits: a loss read back equals the one computed.
  const std::string text = line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(text.data(), 1, text.size(), file_);
  std::fflush(file_);
}

void JsonLogSink::OnPhase(train::Phase phase) {
  Write("phase", {{"phase", train::PhaseName(phase)}});
}

void JsonLogSink::OnStep(const train::StepMetrics& m) {
  json j = {{"step", m.step},
            {"total_steps", m.total_steps},
            {"epoch", m.epoch},
            {"tokens_seen", m.tokens_seen},
            {"loss", m.loss},
            {"learning_rate", m.learning_rate},
            {"grad_norm", m.grad_norm},
            {"tokens_per_second", m.tokens_per_second},
            {"step_seconds", m.step_seconds},
            {"eta_seconds", m.eta_seconds}};
  if (!m.gate_sparsity_by_module.empty() || !m.gate_tau_by_module.empty()) {
    j["gate_sparsity"] = m.gate_sparsity;
    j["gate_token_sparsity"] = m.gate_token_sparsity;
    j["gate_sparsity_by_module"] = m.gate_sparsity_by_module;
    j["gate_token_sparsity_by_module"] = m.gate_token_sparsity_by_module;
    j["gate_tau_by_module"] = m.gate_tau_by_module;
  }
  if (!m.adalora_rank_by_module.empty()) j["adalora_rank_by_module"] = m.adalora_rank_by_module;
  if (m.adadhp_active_modules >= 0) j["adadhp_active_modules"] = m.adadhp_active_modules;
  Write("step", std::move(j));
}

void JsonLogSink::OnEval(const train::EvalMetrics& m) {
  json j = {{"step", m.step}, {"loss", m.loss}};
  if (m.accuracy >= 0) j["accuracy"] = m.accuracy;
  if (!m.gate_sparsity_by_module.empty()) {
    j["gate_sparsity"] = m.gate_sparsity;
    j["gate_token_sparsity"] = m.gate_token_sparsity;
    j["gate_sparsity_by_module"] = m.gate_sparsity_by_module;
    j["gate_token_sparsity_by_module"] = m.gate_token_sparsity_by_module;
  }
  Write("eval", std::move(j));
}

void JsonLogSink::OnCheckpoint(int64_t step, const std::string& dir) {
  Write("checkpoint", {{"step", step}, {"dir", dir}});
}

void JsonLogSink::OnLog(train::LogLevel level, const std::string& message) {
  Write("log", {{"level", LogLevelName(level)}, {"message", message}});
}

}  // namespace peftd::worker
