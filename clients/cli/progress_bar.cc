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
// is too long. The bar itself is the piece with is_bar set.
struct Piece {
  std::string text;
  int drop_rank = 0;  // 0 = never dropped
  bool is_bar = false;
};

// Lays out the pieces within `width`: the bar takes what the text leaves (up to kMaxBarCells),
// and pieces are dropped by rank until the rest fits with a bar of kMinBarCells, or without it.
std::string Fit(std::vector<Piece> pieces, double fraction, int width) {
  auto text_length = [&](bool with_bar) {
    int n = 0, count = 0;
    for (const auto& p : pieces) {
      if (p.is_bar && !with_bar) continue;
      if (!p.is_bar) n += static_cast<int>(p.text.size());
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
  bool has_bar = std::any_of(pieces.begin(), pieces.end(), [](const Piece& p) { return p.is_bar; });
  int cells = width - text_length(true) - 2;
  if (has_bar && cells < kMinBarCells) {
    pieces.erase(
        std::remove_if(pieces.begin(), pieces.end(), [](const Piece& p) { return p.is_bar; }),
        pieces.end());
    has_bar = false;
  }
  std::vector<std::string> parts;
  for (const auto& p : pieces) {
    parts.push_back(p.is_bar ? RenderBar(fraction, std::min(cells, kMaxBarCells)) : p.text);
  }
  std::string line = absl::StrJoin(parts, kSep);
  if (static_cast<int>(line.size()) > width) line.resize(std::max(0, width));
  return line;
}

// The pieces of a job's progress line, bar included, with their drop ranks.
std::vector<Piece> JobPieces(const v1::JobProgress& p, absl::string_view label) {
  std::vector<Piece> pieces;
  if (!label.empty()) pieces.push_back({std::string(label), 4});
  pieces.push_back({"", 1, true});
  if (p.total_steps() > 0) {
    int digits = static_cast<int>(std::to_string(p.total_steps()).size());
    pieces.push_back({absl::StrFormat("%*d/%d", digits, p.step(), p.total_steps()), 0});
    pieces.push_back({absl::StrFormat("%3.0f%%", 100.0 * p.step() / p.total_steps()), 2});
  } else {
    pieces.push_back({absl::StrFormat("step %d", p.step()), 0});
  }
  pieces.push_back({"loss " + FormatLoss(p.train_loss(), p.step() > 0 || p.train_loss() != 0), 3});
  if (p.has_eval()) pieces.push_back({"eval " + FormatLoss(p.eval_loss()), 5});
  if (p.tokens_per_second() > 0) {
    pieces.push_back({FormatCount(p.tokens_per_second()) + " tok/s", 7});
  }
  if (p.gate_sparsity() > 0) {
    pieces.push_back({absl::StrFormat("sparsity %.1f%%", p.gate_sparsity() * 100), 6});
  }
  if (p.eta_seconds() > 0) pieces.push_back({"ETA " + FormatDuration(p.eta_seconds()), 2});
  return pieces;
}

}  // namespace

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

std::string RenderJobProgress(const v1::JobProgress& p, absl::string_view label, int width) {
  double fraction = p.total_steps() > 0 ? static_cast<double>(p.step()) / p.total_steps() : 0;
  return Fit(JobPieces(p, label), fraction, width);
}

std::string SummarizeProgress(const v1::JobProgress& p) {
  std::vector<std::string> parts;
  for (const Piece& piece : JobPieces(p, "")) {
    if (piece.is_bar) continue;
    parts.push_back(piece.text);
  }
  // "step" reads better than a bare fraction in a log line.
  if (p.total_steps() > 0 && !parts.empty())
    parts[0] = "step " + std::string(absl::StripLeadingAsciiWhitespace(parts[0]));
  if (p.total_steps() > 0 && parts.size() > 1) parts.erase(parts.begin() + 1);  // the percentage
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
  return Fit(std::move(pieces), fraction, width);
}

}  // namespace peftd::cli
