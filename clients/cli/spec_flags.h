// `peftctl submit` flags and how they map onto a CreateJobRequest. A flag that was given
// overrides the job file; a flag that was not leaves the file's value (or the server default).
#ifndef PEFTD_CLIENTS_CLI_SPEC_FLAGS_H_
#define PEFTD_CLIENTS_CLI_SPEC_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "peftd/v1/jobs.pb.h"

namespace peftd::cli {

struct SubmitFlags {
  std::string file;  // -f job.yaml|job.json
  std::optional<std::string> model, method, train, val, task, name, request_id, schedule,
      chat_template, init_from;  // init_from: JOB or JOB@STEP
  std::optional<bool> gate;
  std::optional<double> gate_s, gate_lambda;
  std::optional<int64_t> steps;
  std::optional<int> epochs, batch_size, grad_accum, rank, num_labels, max_attempts, max_seq_len,
      workers;
  std::optional<double> lr, alpha, dropout, warmup_ratio, weight_decay;
  std::optional<int64_t> warmup_steps, eval_interval, checkpoint_interval;
  std::optional<uint64_t> seed;
  std::optional<bool> export_merged, skip_bad_lines;
  std::vector<std::string> target_modules;  // comma-separated or repeated; replaces the file's
  std::vector<std::string> label_names;     // comma-separated or repeated; replaces the file's
  std::vector<std::string> labels;          // key=value, repeatable
};

// Applies the flags that were given onto `request` (whose spec may come from a job file).
// --rank, --alpha and --dropout go to the parameters of the method (lora for LORA and DORA,
// adalora for ADALORA with --rank as target_r, hut for HUT); a method without such a parameter
// is an error naming the flag. Changing the method drops the file's parameters of another
// method. --gate-s and --gate-lambda turn the gate on. --rank N for adalora sets target_r and
// raises an unset init_r (default 12) to N. A 0 for a flag whose field reads 0 as "the default"
// (--lr 0 would train at 2e-4) is refused. --init-from JOB[@STEP]
// sets init_from. Every error is a UsageError (exit 2).
absl::Status ApplySubmitFlags(const SubmitFlags& flags, v1::CreateJobRequest* request);

// Case-insensitive names ("lora", "DoRA", "seq-cls"); InvalidArgument listing the choices.
absl::StatusOr<v1::Method> ParseMethod(absl::string_view name);
absl::StatusOr<v1::TaskType> ParseTask(absl::string_view name);
absl::StatusOr<v1::LrSchedule> ParseSchedule(absl::string_view name);
absl::StatusOr<v1::JobState> ParseState(absl::string_view name);

// "key=value" -> (key, value); InvalidArgument naming `flag` otherwise.
absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view text,
                                                               absl::string_view flag);

// CLI11 validators (->check): "" when `text` is fine, else why not, without the flag's name
// (CLI11 puts it in front).
std::string CheckLabelFlag(const std::string& text);
std::string CheckStateFlag(const std::string& text);  // comma-separated state names

// "r-" + 16 random hex digits: the default idempotency key of a submit.
std::string RandomRequestId();

}  // namespace peftd::cli

#endif  // PEFTD_CLIENTS_CLI_SPEC_FLAGS_H_
