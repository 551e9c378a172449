// `peftctl report`: the HTML is parsed back (every tag closed in order, attributes quoted) and
// its charts are checked element by element: points per curve, cells per heatmap, rows per table;
// nothing refers outside the file.
#include "clients/cli/report_html.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace peftd::cli {
namespace {

struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
};

// A strict little parser for what the report writes: fails on an unclosed or misnested tag, an
// unquoted attribute or a stray '<' / '>' in text.
bool Parse(const std::string& html, std::vector<Element>* out, std::string* error) {
  static const std::set<std::string> kVoid = {"meta", "br", "hr", "img", "link", "input"};
  std::vector<std::string> open;
  size_t i = 0;
  while (i < html.size()) {
    const char c = html[i];
    if (c == '>') {
      *error = "stray '>' at " + std::to_string(i);
      return false;
    }
    if (c != '<') {
      ++i;
      continue;
    }
    if (html.compare(i, 9, "<!DOCTYPE") == 0) {
      i = html.find('>', i) + 1;
      continue;
    }
    size_t j = i + 1;
    const bool closing = html[j] == '/';
    if (closing) ++j;
    size_t k = j;
    while (k < html.size() && (std::isalnum(static_cast<unsigned char>(html[k])) || html[k] == '-'))
      ++k;
    const std::string name = html.substr(j, k - j);
    if (name.empty()) {
      *error = "stray '<' at " + std::to_string(i);
      return false;
    }
    Element e{name, {}};
    // Attributes: name="value".
    while (k < html.size() && html[k] != '>' && html[k] != '/') {
      if (html[k] == ' ') {
        ++k;
        continue;
      }
      const size_t eq = html.find('=', k);
      if (eq == std::string::npos || html[eq + 1] != '"') {
        *error = "unquoted attribute in <" + name + "> at " + std::to_string(k);
        return false;
      }
      const size_t end = html.find('"', eq + 2);
      e.attrs[html.substr(k, eq - k)] = html.substr(eq + 2, end - eq - 2);
      k = end + 1;
    }
    const bool self_closing = html[k] == '/';
    i = html.find('>', k) + 1;
    if (closing) {
      if (open.empty() || open.back() != name) {
        *error = "</" + name + "> closes <" + (open.empty() ? "nothing" : open.back()) + ">";
        return false;
      }
      open.pop_back();
      continue;
    }
    out->push_back(e);
    if (!self_closing && !kVoid.count(name)) open.push_back(name);
  }
  if (!open.empty()) {
    *error = "<" + open.back() + "> is never closed";
    return false;
  }
  return true;
}

std::vector<Element> ParseOrFail(const std::string& html) {
  std::vector<Element> elements;
  std::string error;
  EXPECT_TRUE(Parse(html, &elements, &error)) << error;
  return elements;
}

int Count(const std::vector<Element>& elements, const std::string& name,
          const std::string& cls = "") {
  int n = 0;
  for (const auto& e : elements) {
    if (e.name == name && (cls.empty() || (e.attrs.count("class") && e.attrs.at("class") == cls)))
      ++n;
  }
  return n;
}

size_t PointsOf(const std::vector<Element>& elements, const std::string& series) {
  for (const auto& e : elements) {
    if (e.name == "polyline" && e.attrs.count("data-series") &&
        e.attrs.at("data-series") == series) {
      return std::vector<std::string>(absl::StrSplit(e.attrs.at("points"), ' ', absl::SkipEmpty()))
          .size();
    }
  }
  return 0;
}

void ExpectSelfContained(const std::string& html, const std::vector<Element>& elements) {
  EXPECT_EQ(Count(elements, "script"), 0);
  for (const auto& e : elements) {
    EXPECT_EQ(e.attrs.count("src"), 0u) << e.name;
    EXPECT_EQ(e.attrs.count("href"), 0u) << e.name;
  }
  // The only URL is the SVG namespace name, which nothing fetches.
  std::string rest = html;
  size_t at;
  while ((at = rest.find("http")) != std::string::npos) {
    EXPECT_EQ(rest.compare(at, 26, "http://www.w3.org/2000/svg"), 0) << rest.substr(at, 40);
    rest = rest.substr(at + 4);
  }
}

v1::JobEvent Progress(int64_t step, double loss, bool eval, double eval_loss) {
  v1::JobEvent e;
  e.set_level(v1::JobEvent::DEBUG);
  v1::JobProgress* p = e.mutable_progress();
  p->set_step(step);
  p->set_total_steps(3);
  p->set_train_loss(loss);
  p->set_learning_rate(1e-3 * step);
  p->set_has_eval(eval);
  p->set_eval_loss(eval_loss);
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"}) {
    v1::ModuleGateStats* g = p->add_gates();
    g->set_module(m);
    g->set_sparsity(0.1 * step);
    g->set_tau(0.01 * step);
  }
  return e;
}

TEST(ReportHtml, AJobReportHasItsCurvesAndGateHeatmaps) {
  v1::Job job;
  job.set_id("job-1");
  job.set_display_name("<b>&\"x\"");
  job.mutable_spec()->set_method(v1::LORA);
  job.mutable_spec()->mutable_token_gate()->set_enabled(true);
  job.set_state(v1::SUCCEEDED);
  std::vector<v1::JobEvent> events;
  v1::JobEvent info;
  info.set_message("queued");
  events.push_back(info);  // no progress: not a point
  events.push_back(Progress(1, 3.0, false, 0));
  events.push_back(Progress(2, 2.5, true, 2.75));
  events.push_back(Progress(2, 2.4, true, 2.75));  // a later report of step 2 wins
  events.push_back(Progress(3, 2.0, true, 2.5));
  const Report r = JobReportHtml(job, events);
  const std::vector<Element> elements = ParseOrFail(r.html);
  ExpectSelfContained(r.html, elements);
  EXPECT_EQ(Count(elements, "svg"), r.charts);
  EXPECT_EQ(r.charts, 4);  // loss, learning rate, sparsity, τ
  EXPECT_EQ(PointsOf(elements, "train loss"), 3u);
  EXPECT_EQ(PointsOf(elements, "eval loss"), 2u);  // evaluations at steps 2 and 3
  EXPECT_EQ(PointsOf(elements, "learning rate"), 3u);
  EXPECT_EQ(Count(elements, "rect", "cell"), 2 * 2 * 3);  // 2 heatmaps x 2 modules x 3 steps
  EXPECT_TRUE(absl::StrContains(r.html, "layers.0.self_attn.q_proj, step 3: 0.3"));
  EXPECT_TRUE(absl::StrContains(r.html, "&lt;b&gt;&amp;&quot;x&quot;"));
  EXPECT_FALSE(absl::StrContains(r.html, "<b>"));
}

TEST(ReportHtml, AdaLoraRanksAndAdaDhpModulesAreCharted) {
  v1::Job job;
  job.set_id("job-2");
  job.mutable_spec()->set_method(v1::ADALORA);
  std::vector<v1::JobEvent> events = {Progress(1, 1, false, 0), Progress(2, 1, false, 0)};
  for (auto& e : events) {
    e.mutable_progress()->clear_gates();
    e.mutable_progress()->set_adadhp_active_modules(4 - static_cast<int>(e.progress().step()));
  }
  for (int i = 0; i < 3; ++i) {
    auto* m = events[1].mutable_progress()->add_adalora_ranks();
    m->set_module("model.layers." + std::to_string(i) + ".self_attn.q_proj");
    m->set_rank(i + 2);
  }
  const Report r = JobReportHtml(job, events);
  const std::vector<Element> elements = ParseOrFail(r.html);
  EXPECT_EQ(Count(elements, "rect", "bar"), 3);
  EXPECT_EQ(PointsOf(elements, "active modules"), 2u);
  EXPECT_EQ(Count(elements, "svg"), r.charts);
  EXPECT_EQ(r.charts, 4);  // loss, learning rate, ranks, active modules
}

TEST(ReportHtml, ASweepReportHasTheTableTheScatterAndTheCurves) {
  v1::Sweep sweep;
  sweep.set_id("sweep-1");
  sweep.set_metric(v1::EVAL_LOSS);
  sweep.set_best_job_id("job-b");
  std::map<std::string, std::vector<v1::JobEvent>> events;
  for (const char* id : {"job-a", "job-b", "job-c"}) {
    v1::SweepChild* c = sweep.add_children();
    c->set_index(sweep.children_size() - 1);
    c->set_job_id(id);
    auto* a = c->add_assignments();
    a->set_field("token_gate.lambda");
    a->set_value("1e-" + std::to_string(4 + c->index()));
    c->set_state(c->index() == 2 ? v1::FAILED : v1::SUCCEEDED);
    c->set_has_eval(c->index() != 2);
    c->set_eval_loss(2.0 - 0.5 * c->index());
    c->set_gate_sparsity(0.2 * c->index());
    if (c->index() != 2) events[id] = {Progress(1, 3, false, 0), Progress(2, 2, false, 0)};
  }
  const Report r = SweepReportHtml(sweep, events);
  const std::vector<Element> elements = ParseOrFail(r.html);
  ExpectSelfContained(r.html, elements);
  EXPECT_EQ(Count(elements, "tr"), 4);  // the header and 3 children
  EXPECT_EQ(Count(elements, "tr", "best"), 1);
  EXPECT_EQ(Count(elements, "circle", "point"), 2);  // the children with an evaluation
  EXPECT_EQ(Count(elements, "polyline", "series"), 2);
  EXPECT_EQ(PointsOf(elements, "#1 token_gate.lambda=1e-5"), 2u);
  EXPECT_EQ(Count(elements, "svg"), r.charts);
  EXPECT_EQ(r.charts, 2);
}

}  // namespace
}  // namespace peftd::cli
