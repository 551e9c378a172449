#include "clients/cli/sweeps_view.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "clients/cli/format.h"

namespace peftd::cli {
namespace {

std::string Percent(double fraction) { return absl::StrFormat("%.1f%%", 100.0 * fraction); }

std::string Values(const v1::SweepChild& child) {
  return absl::StrJoin(child.assignments(), " ",
                       [](std::string* out, const v1::SweepAssignment& a) {
                         absl::StrAppend(out, a.field(), "=", a.value());
                       });
}

}  // namespace

std::string SweepStateName(v1::SweepState state) {
  std::string name = v1::SweepState_Name(state);
  if (absl::StartsWith(name, "SWEEP_")) name = name.substr(6);
  return absl::AsciiStrToLower(name);
}

std::string SweepMetricName(v1::SweepMetric metric) {
  return absl::AsciiStrToLower(v1::SweepMetric_Name(metric));
}

absl::StatusOr<v1::SweepMetric> ParseSweepMetric(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  absl::StrReplaceAll({{"-", "_"}}, &upper);
  v1::SweepMetric metric;
  if (!v1::SweepMetric_Parse(upper, &metric) || metric == v1::SWEEP_METRIC_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metric: '", name,
                     "' is not a metric; use eval_loss, eval_accuracy, train_loss, gate_sparsity, "
                     "tokens_per_second or wall_time"));
  }
  return metric;
}

absl::StatusOr<v1::SweepAxis> ParseAxis(absl::string_view text, absl::string_view flag) {
  const size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": expected FIELD=V1,V2,... (e.g. token_gate.lambda=1e-6,1e-5), got '", text, "'"));
  }
  v1::SweepAxis axis;
  axis.set_field(std::string(text.substr(0, eq)));
  for (absl::string_view v : absl::StrSplit(text.substr(eq + 1), ',', absl::SkipWhitespace())) {
    axis.add_values(std::string(absl::StripAsciiWhitespace(v)));
  }
  return axis;
}

bool IsFinalSweep(v1::SweepState state) {
  return state == v1::SWEEP_SUCCEEDED || state == v1::SWEEP_FAILED || state == v1::SWEEP_CANCELLED;
}

std::string FormatSweepProgress(const v1::Sweep& sweep) {
  int ended = 0, running = 0, queued = 0, started = 0;
  int64_t step = 0, total = 0;
  for (const v1::SweepChild& c : sweep.children()) {
    if (c.state() == v1::SUCCEEDED || c.state() == v1::FAILED || c.state() == v1::CANCELLED) {
      ++ended;
    } else if (c.state() == v1::RUNNING || c.state() == v1::CANCELLING) {
      ++running;
    } else {
      ++queued;
    }
    // A child that has not reported yet has no total: its steps would only dilute the figure.
    if (c.total_steps() > 0) {
      ++started;
      step += c.step();
      total += c.total_steps();
    }
  }
  std::string out = absl::StrCat("progress: ", ended, "/", sweep.children_size(), " ended, ",
                                 running, " running, ", queued, " queued");
  if (total > 0) {
    absl::StrAppend(&out, "; steps ", step, "/", total, " (", 100 * step / total, "%) of the ",
                    started, " started");
  }
  return out;
}

std::string FormatSweepDetails(const v1::Sweep& sweep, absl::Time now) {
  int done = 0;
  for (const auto& c : sweep.children()) done += IsFinal(c.state()) ? 1 : 0;
  std::string out;
  const bool accuracy = sweep.metric() == v1::EVAL_ACCURACY;
  auto line = [&out](absl::string_view key, absl::string_view value) {
    absl::StrAppend(&out, absl::StrFormat("%-13s %s\n", absl::StrCat(key, ":"), value));
  };
  line("id", sweep.id());
  if (!sweep.display_name().empty()) line("name", sweep.display_name());
  line("state", SweepStateName(sweep.state()));
  line("children",
       absl::StrCat(done, "/", sweep.children_size(), " ended",
                    sweep.spec().max_concurrency() > 0
                        ? absl::StrCat(", at most ", sweep.spec().max_concurrency(), " at once")
                        : ""));
  line("metric", absl::StrCat(SweepMetricName(sweep.metric()), " (",
                              sweep.metric() == v1::EVAL_LOSS || sweep.metric() == v1::TRAIN_LOSS ||
                                      sweep.metric() == v1::WALL_TIME
                                  ? "lowest"
                                  : "highest",
                              " wins)"));
  line("best", sweep.best_job_id().empty() ? "-" : sweep.best_job_id());
  line("created", absl::StrCat(FormatTime(sweep.create_time()), " (",
                               FormatAge(sweep.create_time(), now), " ago)"));
  out += "\n";
  std::vector<std::vector<std::string>> rows = {{"", "#", "JOB", "VALUES", "STATE", "STEP",
                                                 accuracy ? "EVAL ACC" : "EVAL LOSS", "SPARSITY",
                                                 "TRAINABLE", "TOK/S", "WALL"}};
  for (const v1::SweepChild& c : sweep.children()) {
    const bool started = c.wall_time_seconds() > 0;
    rows.push_back(
        {c.job_id() == sweep.best_job_id() ? "*" : "", absl::StrCat(c.index()), c.job_id(),
         Values(c), StateName(c.state()),
         c.total_steps() > 0 ? absl::StrCat(c.step(), "/", c.total_steps()) : "-",
         accuracy ? (c.has_eval() ? Percent(c.eval_accuracy()) : "-")
                  : FormatLoss(c.eval_loss(), c.has_eval()),
         c.gate_sparsity() > 0 ? Percent(c.gate_sparsity()) : "-",
         c.trainable_percent() > 0 ? absl::StrFormat("%.2f%%", c.trainable_percent()) : "-",
         c.tokens_per_second() > 0 ? FormatCount(c.tokens_per_second()) : "-",
         started ? FormatDuration(c.wall_time_seconds()) : "-"});
  }
  out += FormatTable(rows);
  return out;
}

std::vector<std::string> SweepListHeader() {
  return {"ID", "NAME", "STATE", "CHILDREN", "BEST", "AGE"};
}

std::vector<std::string> SweepListRow(const v1::Sweep& sweep, absl::Time now) {
  int done = 0;
  for (const auto& c : sweep.children()) done += IsFinal(c.state()) ? 1 : 0;
  return {sweep.id(),
          sweep.display_name().empty() ? "-" : sweep.display_name(),
          SweepStateName(sweep.state()),
          absl::StrCat(done, "/", sweep.children_size()),
          sweep.best_job_id().empty() ? "-" : sweep.best_job_id(),
          FormatAge(sweep.create_time(), now)};
}

}  // namespace peftd::cli
