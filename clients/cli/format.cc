#include "clients/cli/format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace peftd::cli {
namespace {

absl::Time ToAbsl(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

}  // namespace

std::string FormatDuration(double seconds) {
  if (!(seconds > 0)) return "0s";
  int64_t s = static_cast<int64_t>(std::llround(seconds));
  constexpr int64_t kMinute = 60, kHour = 3600, kDay = 86400;
  if (s < kMinute) return absl::StrFormat("%ds", s);
  if (s < kHour) return absl::StrFormat("%dm%02ds", s / kMinute, s % kMinute);
  if (s < kDay) return absl::StrFormat("%dh%02dm", s / kHour, (s % kHour) / kMinute);
  return absl::StrFormat("%dd%02dh", s / kDay, (s % kDay) / kHour);
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrFormat("%d B", bytes);
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string FormatCount(double n) {
  static const char* kSuffixes[] = {"", "k", "M", "B", "T"};
  int i = 0;
  double v = n;
  while (std::fabs(v) >= 1000 && i < 4) {
    v /= 1000;
    ++i;
  }
  if (i == 0) return absl::StrFormat("%.0f", v);
  // Three significant digits: 4.20k, 42.0k, 420k.
  if (std::fabs(v) < 10) return absl::StrFormat("%.2f%s", v, kSuffixes[i]);
  if (std::fabs(v) < 100) return absl::StrFormat("%.1f%s", v, kSuffixes[i]);
  return absl::StrFormat("%.0f%s", v, kSuffixes[i]);
}

std::string FormatLoss(double loss, bool has) {
  if (!has || !std::isfinite(loss)) return "-";
  return absl::StrFormat("%.4f", loss);
}

std::string FormatAge(const google::protobuf::Timestamp& t, absl::Time now) {
  if (!IsSet(t)) return "-";
  return FormatDuration(absl::ToDoubleSeconds(now - ToAbsl(t)));
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", ToAbsl(t), absl::LocalTimeZone());
}

std::string StateName(v1::JobState state) {
  if (state == v1::JOB_STATE_UNSPECIFIED) return "unknown";
  return absl::AsciiStrToLower(v1::JobState_Name(state));
}

std::string MethodName(v1::Method method) {
  if (method == v1::METHOD_UNSPECIFIED) return "-";
  return absl::AsciiStrToLower(v1::Method_Name(method));
}

std::string PhaseName(v1::JobPhase phase) {
  if (phase == v1::JOB_PHASE_UNSPECIFIED) return "";
  return absl::AsciiStrToLower(v1::JobPhase_Name(phase));
}

bool IsFinal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (row.size() > widths.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace peftd::cli
