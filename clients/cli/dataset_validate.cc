// peftctl datasets validate: the server's line-by-line check, run locally without a server
// (common/dataset_records.h, the same code the server validates uploads with).
#include <memory>
#include <optional>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cli/commands.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/spec_flags.h"
#include "common/dataset_records.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

struct ValidateArgs {
  std::string path;
  std::string task;  // "" = accept any format
  int num_labels = 0;
  std::vector<std::string> label_names;  // comma-separated or repeated
  int max_errors = 100;
};

int RunValidate(Cli& cli, const ValidateArgs& args) {
  data::RecordOptions options;
  options.max_errors = args.max_errors;
  options.num_labels = args.num_labels;
  for (const std::string& entry : args.label_names) {
    for (absl::string_view name : absl::StrSplit(entry, ',', absl::SkipWhitespace())) {
      options.label_names.emplace_back(name);
    }
  }
  // Names are the labels' ids in order: a count that disagrees is a mistake in one of the flags
  // (the server refuses the same pair in a job spec).
  if (args.num_labels > 0 && !options.label_names.empty() &&
      static_cast<int>(options.label_names.size()) != args.num_labels) {
    return cli.Fail(UsageError(absl::StrCat("--label-names: ", options.label_names.size(),
                                            " names for --num-labels ", args.num_labels,
                                            "; give one name per label, in id order")));
  }
  std::optional<v1::TaskType> task;
  if (!args.task.empty()) {
    auto parsed = ParseTask(args.task);
    if (!parsed.ok()) {
      return cli.Fail(UsageError(absl::StrCat("--task: ", parsed.status().message())));
    }
    task = *parsed;
  }
  auto result = data::ValidateRecordFile(args.path, options);
  if (!result.ok()) return cli.Fail(result.status());

  // A file of the other kind than the task is refused by the server at submit time.
  std::string mismatch;
  if (task && result->format != data::Format::kUnknown) {
    const bool classification = data::IsClassification(result->format);
    const bool seq2seq = data::IsSeq2Seq(result->format);
    if (seq2seq != (*task == v1::SEQ_2_SEQ_LM)) {
      mismatch = seq2seq ? absl::StrCat(data::FormatName(result->format),
                                        " records need --task seq_2_seq_lm (an encoder-decoder "
                                        "model such as T5)")
                         : absl::StrCat(data::FormatName(result->format),
                                        " records are not for seq_2_seq_lm; it needs input + "
                                        "target records");
    } else if (classification && *task != v1::SEQ_CLS) {
      mismatch = absl::StrCat(data::FormatName(result->format),
                              " records need --task seq_cls (with --num-labels)");
    } else if (!classification && *task == v1::SEQ_CLS) {
      mismatch = absl::StrCat(data::FormatName(result->format),
                              " records are for causal_lm; seq_cls needs text + label records");
    }
  }
  const bool ok = result->ok() && mismatch.empty();
  if (cli.json()) {
    nlohmann::json errors = nlohmann::json::array();
    for (const auto& e : result->errors) {
      errors.push_back({{"line", e.line}, {"field", e.field}, {"reason", e.reason}});
    }
    nlohmann::json j = {{"file", args.path},
                        {"ok", ok},
                        {"format", data::FormatName(result->format)},
                        {"lines", result->lines},
                        {"records", result->records},
                        {"bad_lines", result->bad_lines},
                        {"bytes", result->bytes},
                        {"errors", errors},
                        {"task_mismatch", mismatch}};
    cli.out() << j.dump(2) << "\n";
    return ok ? kExitOk : kExitInvalid;
  }
  if (!result->ok()) {
    if (result->records == 0 && result->bad_lines == 0) {
      cli.err() << "error: " << args.path << ": no records (the file is empty)\n";
      return kExitInvalid;
    }
    cli.err() << "error: " << args.path << ": " << result->bad_lines
              << (result->bad_lines == 1 ? " bad line" : " bad lines") << " of " << result->lines
              << "\n";
    for (const auto& e : result->errors) cli.err() << "  " << data::FormatLineError(e) << "\n";
    const int64_t unlisted = result->bad_lines - static_cast<int64_t>(result->errors.size());
    if (unlisted > 0) {
      cli.err() << "  and " << unlisted << " more (--max-errors to list them)\n";
    }
    cli.err() << "  fix those lines, or train on the others: submit with --skip-bad-lines "
                 "(skip_bad_lines: true in a job file)\n";
    return kExitInvalid;
  }
  if (!mismatch.empty()) {
    cli.err() << "error: " << args.path << ": " << mismatch << "\n";
    return kExitInvalid;
  }
  cli.out() << args.path << ": ok, " << result->records
            << (result->records == 1 ? " record" : " records") << " of "
            << data::FormatName(result->format) << " (" << result->lines << " lines, "
            << FormatBytes(result->bytes) << ")\n";
  return kExitOk;
}

}  // namespace

void AddDatasetValidateCommand(CLI::App& datasets, Cli& cli, Action* action) {
  auto args = std::make_shared<ValidateArgs>();
  CLI::App* sub = datasets.add_subcommand(
      "validate",
      "Check a JSONL file locally, line by line, as the server will (no server needed)");
  sub->add_option("FILE", args->path, "JSONL file")->required();
  sub->add_option("--task", args->task,
                  "causal_lm, seq_cls or seq_2_seq_lm: also check the format fits");
  sub->add_option("--num-labels", args->num_labels, "Classification: labels must be < N");
  sub->add_option("--label-names", args->label_names,
                  "Classification: the names string labels may take (comma-separated)");
  sub->add_option("--max-errors", args->max_errors,
                  "List at most this many bad lines (default 100)")
      ->check(CLI::PositiveNumber);
  sub->callback([&cli, action, args] {
    action->run = [&cli, args] { return RunValidate(cli, *args); };
    action->needs_server = false;
  });
}

}  // namespace peftd::cli
