// The self-contained HTML of `peftctl report` (docs/cli.md#report): a job's curves from its
// progress events (train and eval loss, learning rate, per-module gate sparsity and τ over time as
// heatmaps, AdaLoRA's ranks, AdaDHP's active modules), or a sweep's comparison table, a scatter of
// its eval metric against gate sparsity and its children's curves. Inline SVG and CSS only: no
// script, no network. Pure functions, tested by parsing what they return.
#ifndef PEFTD_CLIENTS_CLI_REPORT_HTML_H_
#define PEFTD_CLIENTS_CLI_REPORT_HTML_H_

#include <map>
#include <string>
#include <vector>

#include "peftd/v1/job.pb.h"
#include "peftd/v1/sweep.pb.h"

namespace peftd::cli {

struct Report {
  std::string html;
  int charts = 0;  // <svg> elements
};

Report JobReportHtml(const v1::Job& job, const std::vector<v1::JobEvent>& events);

// `events` by job id (children missing from it are left out of the curves).
Report SweepReportHtml(const v1::Sweep& sweep,
                       const std::map<std::string, std::vector<v1::JobEvent>>& events);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_REPORT_HTML_H_
