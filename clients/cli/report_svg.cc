#include "clients/cli/report_svg.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace peftd::cli {
namespace {

constexpr int kWidth = 640, kHeight = 260;
constexpr int kLeft = 60, kRight = 150, kTop = 30, kBottom = 40;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                   "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

std::string Num(double v) { return absl::StrFormat("%.4g", v); }

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void Add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
  // A range of some width, so that a constant series still maps to the middle.
  void Widen() {
    if (empty()) {
      lo = 0;
      hi = 1;
    } else if (hi - lo < 1e-12) {
      const double pad = std::max(std::abs(lo) * 0.05, 1e-6);
      lo -= pad;
      hi += pad;
    }
  }
  double Map(double v, double from, double to) const {
    return from + (v - lo) / (hi - lo) * (to - from);
  }
};

std::string Open(const std::string& title, int width, int height) {
  return absl::StrCat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", width, "\" height=\"", height,
      "\" viewBox=\"0 0 ", width, " ", height, "\" role=\"img\">", "<title>", HtmlEscape(title),
      "</title>", "<text x=\"10\" y=\"18\" class=\"chart-title\">", HtmlEscape(title), "</text>");
}

std::string Axes(const Range& x, const Range& y, const std::string& x_label, bool log_y) {
  const int x0 = kLeft, x1 = kWidth - kRight, y0 = kHeight - kBottom, y1 = kTop;
  auto y_text = [&](double v) { return Num(log_y ? std::pow(10.0, v) : v); };
  return absl::StrCat(
      "<line x1=\"", x0, "\" y1=\"", y0, "\" x2=\"", x1, "\" y2=\"", y0,
      "\" stroke=\"#444\"/><line x1=\"", x0, "\" y1=\"", y0, "\" x2=\"", x0, "\" y2=\"", y1,
      "\" stroke=\"#444\"/>",                                             //
      "<text x=\"", x0, "\" y=\"", y0 + 16, "\">", Num(x.lo), "</text>",  //
      "<text x=\"", x1, "\" y=\"", y0 + 16, "\" text-anchor=\"end\">", Num(x.hi), "</text>",
      "<text x=\"", (x0 + x1) / 2, "\" y=\"", y0 + 30, "\" text-anchor=\"middle\">",
      HtmlEscape(x_label), "</text>",  //
      "<text x=\"", x0 - 4, "\" y=\"", y0, "\" text-anchor=\"end\">", y_text(y.lo), "</text>",
      "<text x=\"", x0 - 4, "\" y=\"", y1 + 10, "\" text-anchor=\"end\">", y_text(y.hi), "</text>");
}

}  // namespace

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string LineChartSvg(const std::string& title, const std::string& x_label,
                         const std::vector<Series>& series, bool log_y) {
  auto ty = [log_y](double v) { return log_y ? (v > 0 ? std::log10(v) : NAN) : v; };
  Range x, y;
  for (const Series& s : series) {
    for (const auto& [px, py] : s.points) {
      x.Add(px);
      y.Add(ty(py));
    }
  }
  x.Widen();
  y.Widen();
  std::string svg = Open(title, kWidth, kHeight);
  absl::StrAppend(&svg, Axes(x, y, x_label, log_y));
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    if (s.points.empty()) continue;
    const char* color = kColors[i % (sizeof(kColors) / sizeof(kColors[0]))];
    std::string points;
    for (const auto& [px, py] : s.points) {
      if (!std::isfinite(ty(py))) continue;
      absl::StrAppend(&points, points.empty() ? "" : " ", Num(x.Map(px, kLeft, kWidth - kRight)),
                      ",", Num(y.Map(ty(py), kHeight - kBottom, kTop)));
    }
    absl::StrAppend(&svg, "<polyline class=\"series\" data-series=\"", HtmlEscape(s.name),
                    "\" fill=\"none\" stroke=\"", color, "\" stroke-width=\"1.5\" points=\"",
                    points, "\"/>");
    if (s.points.size() == 1) {
      absl::StrAppend(&svg, "<circle cx=\"", Num(x.Map(s.points[0].first, kLeft, kWidth - kRight)),
                      "\" cy=\"", Num(y.Map(ty(s.points[0].second), kHeight - kBottom, kTop)),
                      "\" r=\"3\" fill=\"", color, "\"/>");
    }
    const int ly = kTop + 14 * static_cast<int>(i);
    absl::StrAppend(&svg, "<rect x=\"", kWidth - kRight + 10, "\" y=\"", ly - 8,
                    "\" width=\"10\" height=\"10\" fill=\"", color, "\"/><text x=\"",
                    kWidth - kRight + 24, "\" y=\"", ly, "\">", HtmlEscape(s.name), "</text>");
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

std::string HeatmapSvg(const std::string& title, const std::vector<std::string>& rows,
                       const std::vector<std::string>& columns,
                       const std::vector<std::vector<double>>& values) {
  Range v;
  for (const auto& row : values) {
    for (double d : row) v.Add(d);
  }
  v.Widen();
  const int label_width = 230, cell_h = 14, top = 30;
  const int cell_w =
      columns.empty() ? 10 : std::max(3, std::min(24, 560 / static_cast<int>(columns.size())));
  const int width = label_width + cell_w * static_cast<int>(columns.size()) + 20;
  const int height = top + cell_h * static_cast<int>(rows.size()) + 40;
  std::string svg = Open(title, width, height);
  for (size_t r = 0; r < rows.size(); ++r) {
    const int y = top + cell_h * static_cast<int>(r);
    absl::StrAppend(&svg, "<text x=\"", label_width - 4, "\" y=\"", y + cell_h - 3,
                    "\" text-anchor=\"end\" class=\"row-label\">", HtmlEscape(rows[r]), "</text>");
    for (size_t c = 0; c < columns.size(); ++c) {
      const double d = r < values.size() && c < values[r].size() ? values[r][c] : NAN;
      if (!std::isfinite(d)) continue;
      // Light (lo) to dark blue (hi).
      const double t = std::clamp((d - v.lo) / (v.hi - v.lo), 0.0, 1.0);
      const int shade = static_cast<int>(std::lround(235 - 190 * t));
      absl::StrAppend(&svg, "<rect class=\"cell\" x=\"", label_width + cell_w * static_cast<int>(c),
                      "\" y=\"", y, "\" width=\"", cell_w, "\" height=\"", cell_h, "\" fill=\"rgb(",
                      shade, ",", shade, ",255)\"><title>", HtmlEscape(rows[r]), ", ",
                      HtmlEscape(columns[c]), ": ", Num(d), "</title></rect>");
    }
  }
  const int y = top + cell_h * static_cast<int>(rows.size()) + 16;
  if (!columns.empty()) {
    absl::StrAppend(&svg, "<text x=\"", label_width, "\" y=\"", y, "\">",
                    HtmlEscape(columns.front()), "</text><text x=\"",
                    label_width + cell_w * static_cast<int>(columns.size()), "\" y=\"", y,
                    "\" text-anchor=\"end\">", HtmlEscape(columns.back()), "</text>");
  }
  absl::StrAppend(&svg, "<text x=\"10\" y=\"", y + 16, "\">scale: ", Num(v.lo), " (light) to ",
                  Num(v.hi), " (dark)</text></svg>");
  return svg;
}

std::string BarChartSvg(const std::string& title, const std::vector<std::string>& labels,
                        const std::vector<double>& values) {
  double hi = 0;
  for (double v : values) hi = std::max(hi, v);
  if (hi <= 0) hi = 1;
  const int label_width = 230, bar_h = 14, top = 30;
  const int height = top + bar_h * static_cast<int>(labels.size()) + 20;
  std::string svg = Open(title, 640, height);
  for (size_t i = 0; i < labels.size(); ++i) {
    const int y = top + bar_h * static_cast<int>(i);
    const double v = i < values.size() ? values[i] : 0;
    absl::StrAppend(&svg, "<text x=\"", label_width - 4, "\" y=\"", y + bar_h - 3,
                    "\" text-anchor=\"end\" class=\"row-label\">", HtmlEscape(labels[i]),
                    "</text><rect class=\"bar\" x=\"", label_width, "\" y=\"", y + 2, "\" width=\"",
                    Num(std::max(0.0, v) / hi * 340), "\" height=\"", bar_h - 4,
                    "\" fill=\"#1f77b4\"/><text x=\"", label_width + 346, "\" y=\"", y + bar_h - 3,
                    "\">", Num(v), "</text>");
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

std::string ScatterSvg(const std::string& title, const std::string& x_label,
                       const std::string& y_label, const std::vector<ScatterPoint>& points) {
  Range x, y;
  for (const ScatterPoint& p : points) {
    x.Add(p.x);
    y.Add(p.y);
  }
  x.Widen();
  y.Widen();
  std::string svg = Open(title, kWidth, kHeight);
  absl::StrAppend(&svg, Axes(x, y, x_label, false), "<text x=\"10\" y=\"", kTop - 2, "\">",
                  HtmlEscape(y_label), "</text>");
  for (const ScatterPoint& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    const std::string cx = Num(x.Map(p.x, kLeft, kWidth - kRight));
    const std::string cy = Num(y.Map(p.y, kHeight - kBottom, kTop));
    absl::StrAppend(&svg, "<circle class=\"point\" cx=\"", cx, "\" cy=\"", cy, "\" r=\"",
                    p.highlight ? 6 : 4, "\" fill=\"", p.highlight ? "#d62728" : "#1f77b4",
                    "\"><title>", HtmlEscape(p.label), ": ", Num(p.x), ", ", Num(p.y),
                    "</title></circle><text x=\"", cx, "\" y=\"", cy, "\" dx=\"6\" dy=\"-6\">",
                    HtmlEscape(p.label), "</text>");
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

}  // namespace peftd::cli
