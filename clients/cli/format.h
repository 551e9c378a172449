// Human units for peftctl's output: durations ("3m12s"), sizes ("2.1 MiB"), counts ("1.1B"),
// losses, and aligned tables. Pure functions, so the output is tested as strings.
#ifndef PEFTD_CLIENTS_CLI_FORMAT_H_
#define PEFTD_CLIENTS_CLI_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "peftd/v1/job.pb.h"

namespace peftd::cli {

// At most two units, the larger first: "0s", "45s", "3m12s", "2h05m", "3d04h". Negative -> "0s".
std::string FormatDuration(double seconds);

// Binary units with one decimal past KiB: "512 B", "1.5 KiB", "2.1 MiB", "3.4 GiB".
std::string FormatBytes(int64_t bytes);

// Metric suffixes with three significant digits: "950", "4.20k", "135M", "1.10B".
std::string FormatCount(double n);

// Four decimals, whatever the size ("1.2340", "0.0123", "12.5000"): losses of one job line up;
// "-" when `has` is false.
std::string FormatLoss(double loss, bool has = true);

// The time since `t` as a duration ("3m12s"); "-" when `t` is unset.
std::string FormatAge(const google::protobuf::Timestamp& t, absl::Time now);

// "2024-05-01 12:03:04" in local time; "-" when unset.
std::string FormatTime(const google::protobuf::Timestamp& t);

// Lower-case names without the enum prefix: "running", "lora", "causal_lm", "loading_model".
std::string StateName(v1::JobState state);
std::string MethodName(v1::Method method);
std::string PhaseName(v1::JobPhase phase);
bool IsFinal(v1::JobState state);

// Columns padded to their widest cell, separated by two spaces, no trailing blanks; the first
// row is the header. Cells are ASCII (widths count bytes).
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_FORMAT_H_
