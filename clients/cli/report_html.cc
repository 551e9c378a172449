#include "clients/cli/report_html.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cli/format.h"
#include "clients/cli/jobs_view.h"
#include "clients/cli/report_svg.h"
#include "clients/cli/sweeps_view.h"

namespace peftd::cli {
namespace {

constexpr size_t kMaxHeatmapColumns = 60;

const char kStyle[] =
    "body{font-family:sans-serif;margin:24px;color:#222}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:28px}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}"
    "tr.best{background:#fde2e2}svg{display:block;margin:8px 0}svg text{font-size:11px}"
    ".chart-title{font-weight:bold}dl{display:grid;grid-template-columns:max-content auto;gap:2px "
    "12px}"
    "dt{color:#666}dd{margin:0}";

std::string Page(const std::string& title, const std::string& body) {
  return absl::StrCat("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>",
                      HtmlEscape(title), "</title><style>", kStyle, "</style></head><body><h1>",
                      HtmlEscape(title), "</h1>", body, "</body></html>\n");
}

// "model.layers.3.self_attn.q_proj" -> "layers.3.self_attn.q_proj".
std::string ShortModule(const std::string& name) {
  return absl::StartsWith(name, "model.") ? name.substr(6) : name;
}

// The progress of each step, the last report of a step winning, in step order.
std::vector<v1::JobProgress> ProgressBySteps(const std::vector<v1::JobEvent>& events) {
  std::map<int64_t, v1::JobProgress> by_step;
  for (const v1::JobEvent& e : events) {
    if (!e.has_progress() || e.progress().step() <= 0) continue;
    by_step[e.progress().step()] = e.progress();
  }
  std::vector<v1::JobProgress> out;
  for (auto& [step, p] : by_step) out.push_back(std::move(p));
  return out;
}

// Eval points: the steps at which the reported eval loss changed (an evaluation ran).
Series EvalSeries(const std::vector<v1::JobProgress>& steps, bool accuracy) {
  Series s{accuracy ? "eval accuracy" : "eval loss", {}};
  double last = NAN;
  for (const v1::JobProgress& p : steps) {
    if (!p.has_eval()) continue;
    const double v = accuracy ? p.eval_accuracy() : p.eval_loss();
    if (v != last) s.points.emplace_back(static_cast<double>(p.step()), v);
    last = v;
  }
  return s;
}

std::string Dl(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string out = "<dl>";
  for (const auto& [k, v] : rows) {
    absl::StrAppend(&out, "<dt>", HtmlEscape(k), "</dt><dd>", HtmlEscape(v), "</dd>");
  }
  return out + "</dl>";
}

std::string Section(const std::string& title, const std::string& svg, int* charts) {
  ++*charts;
  return absl::StrCat("<h2>", HtmlEscape(title), "</h2>", svg);
}

// Heatmaps of a gated job's sparsity and τ per module (rows) over the reported steps (columns,
// sampled down to kMaxHeatmapColumns).
std::string GateHeatmaps(const std::vector<v1::JobProgress>& steps, int* charts) {
  std::vector<const v1::JobProgress*> gated;
  for (const auto& p : steps) {
    if (p.gates_size() > 0) gated.push_back(&p);
  }
  if (gated.empty()) return "";
  std::vector<const v1::JobProgress*> columns;
  const size_t n = gated.size();
  const size_t want = std::min(n, kMaxHeatmapColumns);
  for (size_t i = 0; i < want; ++i)
    columns.push_back(gated[want == 1 ? n - 1 : i * (n - 1) / (want - 1)]);
  std::vector<std::string> modules;
  std::map<std::string, size_t> row_of;
  for (const auto* p : columns) {
    for (const auto& g : p->gates()) {
      if (row_of.emplace(g.module(), modules.size()).second) modules.push_back(g.module());
    }
  }
  std::vector<std::string> rows, cols;
  for (const auto& m : modules) rows.push_back(ShortModule(m));
  for (const auto* p : columns) cols.push_back(absl::StrCat("step ", p->step()));
  std::vector<std::vector<double>> sparsity(rows.size(), std::vector<double>(cols.size(), NAN));
  std::vector<std::vector<double>> tau = sparsity;
  for (size_t c = 0; c < columns.size(); ++c) {
    for (const auto& g : columns[c]->gates()) {
      sparsity[row_of[g.module()]][c] = g.sparsity();
      tau[row_of[g.module()]][c] = g.tau();
    }
  }
  return absl::StrCat(
      Section("Gate sparsity per module",
              HeatmapSvg("sparsity (layers x modules) over steps", rows, cols, sparsity), charts),
      Section("Gate threshold τ per module",
              HeatmapSvg("τ (layers x modules) over steps", rows, cols, tau), charts));
}

}  // namespace

Report JobReportHtml(const v1::Job& job, const std::vector<v1::JobEvent>& events) {
  Report r;
  const std::vector<v1::JobProgress> steps = ProgressBySteps(events);
  const v1::JobProgress& last = job.progress();
  std::string body = Dl({
      {"job", job.id()},
      {"name", job.display_name().empty() ? "-" : job.display_name()},
      {"state", StateName(job.state())},
      {"model", job.spec().base_model()},
      {"method", MethodLabel(job.spec())},
      {"steps", absl::StrCat(last.step(), "/", last.total_steps())},
      {"train loss", FormatLoss(last.train_loss(), last.step() > 0)},
      {"eval loss", FormatLoss(last.eval_loss(), last.has_eval())},
      {"gate sparsity", job.spec().token_gate().enabled()
                            ? absl::StrFormat("%.1f%%", 100 * last.gate_sparsity())
                            : "-"},
      {"trainable",
       job.total_parameters() > 0
           ? absl::StrFormat("%d of %d (%.3f%%)", job.trainable_parameters(),
                             job.total_parameters(),
                             100.0 * job.trainable_parameters() / job.total_parameters())
           : "-"},
  });
  Series train{"train loss", {}};
  Series lr{"learning rate", {}};
  Series active{"active modules", {}};
  for (const v1::JobProgress& p : steps) {
    train.points.emplace_back(p.step(), p.train_loss());
    lr.points.emplace_back(p.step(), p.learning_rate());
    if (p.adadhp_active_modules() > 0)
      active.points.emplace_back(p.step(), p.adadhp_active_modules());
  }
  const bool classifier = job.spec().task() == v1::SEQ_CLS;
  absl::StrAppend(
      &body, Section("Loss",
                     LineChartSvg("train and eval loss", "step", {train, EvalSeries(steps, false)}),
                     &r.charts));
  if (classifier) {
    absl::StrAppend(
        &body, Section("Accuracy", LineChartSvg("eval accuracy", "step", {EvalSeries(steps, true)}),
                       &r.charts));
  }
  absl::StrAppend(&body,
                  Section("Learning rate", LineChartSvg("learning rate", "step", {lr}), &r.charts));
  absl::StrAppend(&body, GateHeatmaps(steps, &r.charts));
  // AdaLoRA: the ranks of the newest report that has them.
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->adalora_ranks_size() == 0) continue;
    std::vector<std::string> labels;
    std::vector<double> values;
    for (const auto& m : it->adalora_ranks()) {
      labels.push_back(ShortModule(m.module()));
      values.push_back(m.rank());
    }
    absl::StrAppend(&body, Section(absl::StrCat("AdaLoRA rank per module at step ", it->step()),
                                   BarChartSvg("rank per module", labels, values), &r.charts));
    break;
  }
  if (!active.points.empty()) {
    absl::StrAppend(&body, Section("AdaDHP active modules",
                                   LineChartSvg("active modules", "step", {active}), &r.charts));
  }
  r.html = Page(absl::StrCat("peftd report: job ", job.id()), body);
  return r;
}

Report SweepReportHtml(const v1::Sweep& sweep,
                       const std::map<std::string, std::vector<v1::JobEvent>>& events) {
  Report r;
  const bool accuracy = sweep.metric() == v1::EVAL_ACCURACY;
  std::string body = Dl({{"sweep", sweep.id()},
                         {"name", sweep.display_name().empty() ? "-" : sweep.display_name()},
                         {"state", SweepStateName(sweep.state())},
                         {"metric", SweepMetricName(sweep.metric())},
                         {"best", sweep.best_job_id().empty() ? "-" : sweep.best_job_id()}});
  absl::StrAppend(&body,
                  "<h2>Comparison</h2><table><thead><tr><th>#</th><th>job</th><th>values</th>"
                  "<th>state</th><th>step</th><th>eval loss</th><th>eval accuracy</th>"
                  "<th>gate sparsity</th><th>trainable %</th><th>tokens/s</th><th>wall time</th>"
                  "</tr></thead><tbody>");
  std::vector<ScatterPoint> points;
  std::vector<Series> curves;
  for (const v1::SweepChild& c : sweep.children()) {
    std::string values;
    for (const auto& a : c.assignments())
      absl::StrAppend(&values, values.empty() ? "" : " ", a.field(), "=", a.value());
    const bool best = c.job_id() == sweep.best_job_id();
    absl::StrAppend(&body, best ? "<tr class=\"best\">" : "<tr>", "<td>", c.index(), "</td><td>",
                    HtmlEscape(c.job_id()), best ? " (best)" : "", "</td><td>", HtmlEscape(values),
                    "</td><td>", StateName(c.state()), "</td><td>", c.step(), "/", c.total_steps(),
                    "</td><td>", FormatLoss(c.eval_loss(), c.has_eval()), "</td><td>",
                    c.has_eval() && c.eval_accuracy() > 0
                        ? absl::StrFormat("%.1f%%", 100 * c.eval_accuracy())
                        : "-",
                    "</td><td>", absl::StrFormat("%.1f%%", 100 * c.gate_sparsity()), "</td><td>",
                    absl::StrFormat("%.3f", c.trainable_percent()), "</td><td>",
                    FormatCount(c.tokens_per_second()), "</td><td>",
                    FormatDuration(c.wall_time_seconds()), "</td></tr>");
    if (c.has_eval()) {
      points.push_back({c.gate_sparsity(), accuracy ? c.eval_accuracy() : c.eval_loss(),
                        absl::StrCat("#", c.index()), best});
    }
    auto ev = events.find(c.job_id());
    if (ev != events.end()) {
      Series s{absl::StrCat("#", c.index(), " ", values), {}};
      for (const auto& p : ProgressBySteps(ev->second))
        s.points.emplace_back(p.step(), p.train_loss());
      curves.push_back(std::move(s));
    }
  }
  absl::StrAppend(&body, "</tbody></table>");
  absl::StrAppend(&body, Section(accuracy ? "Eval accuracy against gate sparsity"
                                          : "Eval loss against gate sparsity",
                                 ScatterSvg("children", "gate sparsity",
                                            accuracy ? "eval accuracy" : "eval loss", points),
                                 &r.charts));
  if (!curves.empty()) {
    absl::StrAppend(&body, Section("Train loss of each child",
                                   LineChartSvg("train loss", "step", curves), &r.charts));
  }
  r.html = Page(absl::StrCat("peftd report: sweep ", sweep.id()), body);
  return r;
}

}  // namespace peftd::cli
