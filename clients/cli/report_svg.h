// Inline SVG charts for `peftctl report` (docs/cli.md#report): line charts, heatmaps, bar charts
// and scatter plots as self-contained <svg> elements (no script, no external reference). Pure
// functions of their data, so the report is tested by parsing strings.
#ifndef PEFTD_CLIENTS_CLI_REPORT_SVG_H_
#define PEFTD_CLIENTS_CLI_REPORT_SVG_H_

#include <string>
#include <utility>
#include <vector>

namespace peftd::cli {

// `text` with &, <, >, " and ' escaped for HTML and SVG text and attributes.
std::string HtmlEscape(const std::string& text);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending
};

// One <polyline> per series with at least one point (a single point is drawn as a circle too),
// axes labelled with their ranges, a legend. `log_y`: y on a log10 scale (positive values only).
std::string LineChartSvg(const std::string& title, const std::string& x_label,
                         const std::vector<Series>& series, bool log_y = false);

// rows x columns of cells coloured from `lo` (light) to `hi` (dark); NaN cells are left blank.
// Each cell carries a <title> "row, column: value" for hovering.
std::string HeatmapSvg(const std::string& title, const std::vector<std::string>& rows,
                       const std::vector<std::string>& columns,
                       const std::vector<std::vector<double>>& values);

// One horizontal bar per label.
std::string BarChartSvg(const std::string& title, const std::vector<std::string>& labels,
                        const std::vector<double>& values);

struct ScatterPoint {
  double x = 0, y = 0;
  std::string label;
  bool highlight = false;  // drawn larger, in another colour (the best child)
};

std::string ScatterSvg(const std::string& title, const std::string& x_label,
                       const std::string& y_label, const std::vector<ScatterPoint>& points);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_REPORT_SVG_H_
