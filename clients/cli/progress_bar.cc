#include "clients/cli/progress_bar.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "clients/cli/format.h"

namespace peftd::cli {
namespace {

constexpr int kMinBarCells = 10;
constexpr int kMaxBarCells = 40;
constexpr absl::string_view kSep = "  ";

// One piece of a progress line; pieces with a higher drop_rank are dropped first when the line
// is too long. The bar itself is the piece with is_bar set. `width` is the room the piece takes
// whatever its text (padded with blanks), so that numbers changing length do not move the rest.
struct Piece {
  std::string text;
  int drop_rank = 0;  // 0 = never dropped; unique per piece but for the bar
  bool is_bar = false;
  int width = 0;
  // The room the layout gives it: its width, whatever this redraw's text is (a rare longer text,
  // a two-digit loss, overflows by a character rather than moving the bar).
  int Size() const { return width > 0 ? width : static_cast<int>(text.size()); }
};

// Which pieces of `layout` fit in `width` (by drop rank) and how many cells the bar gets (0: no
// bar). Decided on the layout, not the current numbers, so it does not change between redraws.
struct Fitting {
  std::vector<int> kept_ranks;
  int cells = 0;
};

Fitting FitLayout(std::vector<Piece> pieces, int width) {
  auto text_length = [&](bool with_bar) {
    int n = 0, count = 0;
    for (const auto& p : pieces) {
      if (p.is_bar && !with_bar) continue;
      if (!p.is_bar) n += p.Size();
      ++count;
    }
    return n + std::max(0, count - 1) * static_cast<int>(kSep.size());
  };
  auto drop_one = [&]() {
    auto it = std::max_element(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
      return a.drop_rank < b.drop_rank;
    });
    if (it == pieces.end() || it->drop_rank == 0) return false;
    pieces.erase(it);
    return true;
  };
  // Two bracket characters around the cells.
  while (text_length(true) + kMinBarCells + 2 > width) {
    if (!drop_one()) break;
  }
  Fitting fitting;
  bool has_bar = std::any_of(pieces.begin(), pieces.end(), [](const Piece& p) { return p.is_bar; });
  int cells = width - text_length(true) - 2;
  if (has_bar && cells >= kMinBarCells) fitting.cells = std::min(cells, kMaxBarCells);
  for (const auto& p : pieces) {
    if (!p.is_bar) fitting.kept_ranks.push_back(p.drop_rank);
  }
  return fitting;
}

// `pieces` laid out as `layout` fits in `width`: kept pieces padded to their width.
std::string Render(const std::vector<Piece>& layout, const std::vector<Piece>& pieces,
                   double fraction, int width) {
  const Fitting fitting = FitLayout(layout, width);
  std::vector<std::string> parts;
  for (const auto& p : pieces) {
    if (p.is_bar) {
      if (fitting.cells > 0) parts.push_back(RenderBar(fraction, fitting.cells));
      continue;
    }
    if (std::find(fitting.kept_ranks.begin(), fitting.kept_ranks.end(), p.drop_rank) ==
        fitting.kept_ranks.end()) {
      continue;
    }
    std::string text = p.text;
    if (static_cast<int>(text.size()) < p.width) text.resize(p.width, ' ');
    parts.push_back(text);
  }
  std::string line = absl::StrJoin(parts, kSep);
  while (!line.empty() && line.back() == ' ') line.pop_back();
  if (static_cast<int>(line.size()) > width) line.resize(std::max(0, width));
  return line;
}

// Drop ranks of the job line's pieces, dropped highest first.
enum JobRank {
  kRankStep = 0,
  kRankBar = 1,
  kRankEta = 2,
  kRankLoss = 3,
  kRankSparsity = 4,
  kRankAccuracy = 5,
  kRankTau = 6,
  kRankEval = 7,
  kRankPercent = 8,
  kRankLabel = 9,
  kRankRate = 10,
};

std::string Loss(double loss, bool has) {
  return has && std::isfinite(loss) ? absl::StrFormat("%.4f", loss) : "-";
}

// The pieces of a job's progress line, bar included. With `layout`, every piece the style
// allows is there (with placeholder text), whatever the numbers say.
std::vector<Piece> JobPieces(const v1::JobProgress& p, absl::string_view label,
                             const ProgressStyle& style, bool layout) {
  std::vector<Piece> pieces;
  if (!label.empty()) pieces.push_back({std::string(label), kRankLabel, false, 21});
  pieces.push_back({"", kRankBar, true});
  if (p.total_steps() > 0) {
    int digits = static_cast<int>(std::to_string(p.total_steps()).size());
    pieces.push_back({absl::StrFormat("%*d/%d", digits, p.step(), p.total_steps()), kRankStep});
    pieces.push_back(
        {absl::StrFormat("%3.0f%%", 100.0 * p.step() / p.total_steps()), kRankPercent, false, 4});
  } else {
    pieces.push_back({absl::StrFormat("step %d", p.step()), kRankStep, false, 10});
  }
  pieces.push_back({"loss " + Loss(p.train_loss(), p.train_loss() != 0), kRankLoss, false, 11});
  if (layout || style.has_validation || p.has_eval()) {
    pieces.push_back({"eval " + Loss(p.eval_loss(), p.has_eval()), kRankEval, false, 11});
  }
  if (layout || style.classification || p.eval_accuracy() > 0) {
    pieces.push_back({p.has_eval() ? absl::StrFormat("acc %.1f%%", p.eval_accuracy() * 100)
                                   : std::string("acc -"),
                      kRankAccuracy, false, 10});
  }
  if (style.live && (layout || p.tokens_per_second() > 0)) {
    pieces.push_back({p.tokens_per_second() > 0 ? FormatCount(p.tokens_per_second()) + " tok/s"
                                                : std::string("- tok/s"),
                      kRankRate, false, 11});
  }
  if (layout || style.gated || p.gate_sparsity() > 0 || p.gates_size() > 0) {
    pieces.push_back(
        {absl::StrFormat("sparsity %.1f%%", p.gate_sparsity() * 100), kRankSparsity, false, 14});
    pieces.push_back(
        {p.gates_size() > 0 ? absl::StrFormat("tau %.3g", MeanTau(p)) : std::string("tau -"),
         kRankTau, false, 11});
  }
  if (style.live && (layout || p.eta_seconds() > 0)) {
    pieces.push_back(
        {p.eta_seconds() > 0 ? "ETA " + FormatDuration(p.eta_seconds()) : std::string("ETA -"),
         kRankEta, false, 10});
  }
  return pieces;
}

// The layout pieces the style (and what the numbers show) allows.
std::vector<Piece> JobLayout(const v1::JobProgress& p, absl::string_view label,
                             const ProgressStyle& style) {
  std::vector<Piece> all = JobPieces(p, label, style, /*layout=*/true);
  std::vector<Piece> shown = JobPieces(p, label, style, /*layout=*/false);
  // Only the pieces this job can ever show: those the style asks for, or the numbers have.
  std::vector<Piece> layout;
  for (const Piece& piece : all) {
    const bool running_only = piece.drop_rank == kRankRate || piece.drop_rank == kRankEta;
    const bool can_show = piece.is_bar || (running_only && style.live) ||
                          std::any_of(shown.begin(), shown.end(), [&](const Piece& s) {
                            return !s.is_bar && s.drop_rank == piece.drop_rank;
                          });
    if (can_show) layout.push_back(piece);
  }
  return layout;
}

}  // namespace

ProgressStyle StyleOf(const v1::Job& job) {
  ProgressStyle style;
  style.gated = job.spec().token_gate().enabled();
  style.classification = job.spec().task() == v1::SEQ_CLS;
  style.has_validation = !job.spec().validation_dataset_id().empty();
  style.live = job.state() == v1::RUNNING;
  return style;
}

double MeanTau(const v1::JobProgress& p) {
  if (p.gates_size() == 0) return 0;
  double sum = 0;
  for (const auto& g : p.gates()) sum += g.tau();
  return sum / p.gates_size();
}

std::string RenderBar(double fraction, int cells) {
  if (cells <= 0) return "[]";
  if (!(fraction > 0)) fraction = 0;
  if (fraction > 1) fraction = 1;
  int full = static_cast<int>(std::floor(fraction * cells));
  std::string bar(full, '=');
  if (full < cells) {
    bar += full > 0 || fraction > 0 ? ">" : " ";
    bar += std::string(cells - full - 1, ' ');
  }
  return "[" + bar + "]";
}

std::string RenderJobProgress(const v1::JobProgress& p, absl::string_view label, int width,
                              const ProgressStyle& style) {
  double fraction = p.total_steps() > 0 ? static_cast<double>(p.step()) / p.total_steps() : 0;
  return Render(JobLayout(p, label, style), JobPieces(p, label, style, /*layout=*/false), fraction,
                width);
}

std::string SummarizeProgress(const v1::JobProgress& p, const ProgressStyle& style) {
  std::vector<std::string> parts;
  for (const Piece& piece : JobPieces(p, "", style, /*layout=*/false)) {
    if (piece.is_bar || piece.drop_rank == kRankPercent) continue;
    parts.push_back(std::string(absl::StripLeadingAsciiWhitespace(piece.text)));
  }
  // "step" reads better than a bare fraction in a log line.
  if (p.total_steps() > 0 && !parts.empty()) parts[0] = "step " + parts[0];
  return absl::StrJoin(parts, "  ");
}

std::string RenderTransfer(absl::string_view name, int64_t done, int64_t total,
                           double elapsed_seconds, int width) {
  double fraction = total > 0 ? static_cast<double>(done) / total : 0;
  std::vector<Piece> pieces;
  if (!name.empty()) pieces.push_back({std::string(name), 3});
  pieces.push_back({"", 1, true});
  pieces.push_back({FormatBytes(done) + "/" + FormatBytes(total), 0});
  pieces.push_back({absl::StrFormat("%3.0f%%", fraction * 100), 2});
  if (elapsed_seconds > 0 && done > 0) {
    double rate = done / elapsed_seconds;
    pieces.push_back({FormatBytes(static_cast<int64_t>(rate)) + "/s", 5});
    if (done < total) pieces.push_back({"ETA " + FormatDuration((total - done) / rate), 4});
  }
  return Render(pieces, pieces, fraction, width);
}

}  // namespace peftd::cli
