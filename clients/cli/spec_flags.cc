#include "clients/cli/spec_flags.h"

#include <google/protobuf/descriptor.h>

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "clients/cli/exit_codes.h"
#include "common/job_spec.h"
#include "common/status.h"

namespace peftd::cli {
namespace {

// The value of enum `E` named `name` (case-insensitive, '-' for '_'), never the 0 value.
template <typename E>
absl::StatusOr<E> ParseEnum(const google::protobuf::EnumDescriptor* d, absl::string_view name,
                            absl::string_view what) {
  std::string upper =
      absl::AsciiStrToUpper(absl::StrReplaceAll(absl::StripAsciiWhitespace(name), {{"-", "_"}}));
  const auto* value = d->FindValueByName(upper);
  if (value != nullptr && value->number() != 0) return static_cast<E>(value->number());
  std::vector<std::string> names;
  for (int i = 0; i < d->value_count(); ++i) {
    if (d->value(i)->number() != 0) names.push_back(absl::AsciiStrToLower(d->value(i)->name()));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ", what, " '", name, "': one of ", absl::StrJoin(names, ", ")));
}

absl::Status MethodParamsFromFlags(const SubmitFlags& f, v1::JobSpec* spec) {
  if (!f.rank && !f.alpha && !f.dropout) return absl::OkStatus();
  switch (spec->method()) {
    case v1::LORA:
    case v1::DORA: {
      auto* p = spec->mutable_lora();
      if (f.rank) p->set_r(*f.rank);
      if (f.alpha) p->set_alpha(static_cast<float>(*f.alpha));
      if (f.dropout) p->set_dropout(static_cast<float>(*f.dropout));
      return absl::OkStatus();
    }
    case v1::ADALORA: {
      auto* p = spec->mutable_adalora();
      if (f.rank) {
        // target_r <= init_r: a rank above the default init_r raises it, so that `--rank 16`
        // means what it says; an init_r the job file set is the user's and is kept.
        constexpr int kDefaultInitR = 12;
        if (p->init_r() == 0 && *f.rank > kDefaultInitR) p->set_init_r(*f.rank);
        if (p->init_r() != 0 && *f.rank > p->init_r()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--rank: ", *f.rank, " sets adalora.target_r, which must be <= adalora.init_r (",
              p->init_r(), " in the job file); raise init_r in the file or lower --rank"));
        }
        p->set_target_r(*f.rank);
      }
      if (f.alpha) p->set_alpha(static_cast<float>(*f.alpha));
      if (f.dropout) p->set_dropout(static_cast<float>(*f.dropout));
      return absl::OkStatus();
    }
    case v1::HUT:
      if (f.alpha || f.dropout) {
        return absl::InvalidArgumentError(
            absl::StrCat(f.alpha ? "--alpha" : "--dropout", ": hut has no such parameter"));
      }
      spec->mutable_hut()->set_r(*f.rank);
      return absl::OkStatus();
    case v1::ADADHP:
      return absl::InvalidArgumentError(
          absl::StrCat(f.rank    ? "--rank"
                       : f.alpha ? "--alpha"
                                 : "--dropout",
                       ": adadhp has no rank, alpha or dropout (set adadhp.* in a job file)"));
    default:
      return absl::InvalidArgumentError(
          "--rank/--alpha/--dropout: give --method too (or method in the job file)");
  }
}

}  // namespace

absl::StatusOr<v1::Method> ParseMethod(absl::string_view name) {
  return ParseEnum<v1::Method>(v1::Method_descriptor(), name, "method");
}
absl::StatusOr<v1::TaskType> ParseTask(absl::string_view name) {
  return ParseEnum<v1::TaskType>(v1::TaskType_descriptor(), name, "task");
}
absl::StatusOr<v1::LrSchedule> ParseSchedule(absl::string_view name) {
  return ParseEnum<v1::LrSchedule>(v1::LrSchedule_descriptor(), name, "schedule");
}
absl::StatusOr<v1::JobState> ParseState(absl::string_view name) {
  return ParseEnum<v1::JobState>(v1::JobState_descriptor(), name, "state");
}

absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view text,
                                                               absl::string_view flag) {
  size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not key=value (e.g. ", flag, " team=nlp)"));
  }
  return std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
}

std::string CheckLabelFlag(const std::string& text) {
  if (ParseLabel(text, "--label").ok()) return "";
  return absl::StrCat("'", text, "' is not key=value (e.g. --label team=nlp)");
}

std::string CheckStateFlag(const std::string& text) {
  for (absl::string_view name : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    auto state = ParseState(name);
    if (!state.ok()) return std::string(state.status().message());
  }
  return "";
}

std::string RandomRequestId() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  return absl::StrFormat("r-%016x", rng());
}

namespace {

// Flags whose spec field reads 0 as "use the default": a 0 given on purpose would be silently
// replaced, so it is refused.
absl::Status RefuseZeroes(const SubmitFlags& f) {
  struct Flag {
    const char* name;
    bool zero;
    const char* default_value;
  };
  const Flag flags[] = {
      {"--lr", f.lr && *f.lr == 0, "2e-4"},
      {"--gate-s", f.gate_s && *f.gate_s == 0, "4e-5"},
      {"--gate-lambda", f.gate_lambda && *f.gate_lambda == 0, "1e-6"},
      {"--rank", f.rank && *f.rank == 0, "8"},
      {"--alpha", f.alpha && *f.alpha == 0, "the method's"},
      {"--epochs", f.epochs && *f.epochs == 0, "1"},
      {"--batch-size", f.batch_size && *f.batch_size == 0, "8"},
      {"--grad-accum", f.grad_accum && *f.grad_accum == 0, "1"},
      {"--max-seq-len", f.max_seq_len && *f.max_seq_len == 0, "512"},
      {"--checkpoint-interval", f.checkpoint_interval && *f.checkpoint_interval == 0, "50"},
      {"--max-attempts", f.max_attempts && *f.max_attempts == 0, "3"},
      {"--workers", f.workers && *f.workers == 0, "1"},
  };
  for (const Flag& flag : flags) {
    if (flag.zero) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag.name, ": must be > 0 (the job spec reads 0 as the default, ",
                       flag.default_value, "; leave the flag out for the default)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyFlags(const SubmitFlags& f, v1::CreateJobRequest* request) {
  RETURN_IF_ERROR(RefuseZeroes(f));
  v1::JobSpec* spec = request->mutable_spec();
  if (f.model) spec->set_base_model(*f.model);
  if (f.method) {
    auto method = ParseMethod(*f.method);
    if (!method.ok()) return Annotate(method.status(), "--method");
    if (*method != spec->method() && spec->method_params_case() != MethodParamsCaseOf(*method)) {
      spec->clear_method_params();
    }
    spec->set_method(*method);
  }
  RETURN_IF_ERROR(MethodParamsFromFlags(f, spec));
  if (f.gate) spec->mutable_token_gate()->set_enabled(*f.gate);
  if (f.gate_s) {
    spec->mutable_token_gate()->set_enabled(true);
    spec->mutable_token_gate()->set_s(*f.gate_s);
  }
  if (f.gate_lambda) {
    spec->mutable_token_gate()->set_enabled(true);
    spec->mutable_token_gate()->set_lambda(*f.gate_lambda);
  }
  if (!f.target_modules.empty()) {
    spec->clear_target_modules();
    for (const std::string& entry : f.target_modules) {
      // A regex ("re:...") may hold commas; everything else is a comma-separated list.
      if (absl::StartsWith(entry, "re:")) {
        spec->add_target_modules(entry);
        continue;
      }
      for (absl::string_view m : absl::StrSplit(entry, ',', absl::SkipWhitespace())) {
        spec->add_target_modules(std::string(absl::StripAsciiWhitespace(m)));
      }
    }
  }
  if (f.task) {
    auto task = ParseTask(*f.task);
    if (!task.ok()) return Annotate(task.status(), "--task");
    spec->set_task(*task);
  }
  if (f.num_labels) spec->set_num_labels(*f.num_labels);
  if (!f.label_names.empty()) {
    spec->clear_label_names();
    for (const std::string& entry : f.label_names) {
      for (absl::string_view n : absl::StrSplit(entry, ',', absl::SkipWhitespace())) {
        spec->add_label_names(std::string(absl::StripAsciiWhitespace(n)));
      }
    }
  }
  if (f.train) spec->set_training_dataset_id(*f.train);
  if (f.val) spec->set_validation_dataset_id(*f.val);
  if (f.chat_template) spec->set_chat_template(*f.chat_template);
  if (f.epochs) spec->set_epochs(*f.epochs);
  if (f.steps) spec->set_max_steps(*f.steps);
  if (f.batch_size) spec->set_batch_size(*f.batch_size);
  if (f.grad_accum) spec->set_gradient_accumulation_steps(*f.grad_accum);
  if (f.lr) spec->set_learning_rate(*f.lr);
  if (f.schedule) {
    auto schedule = ParseSchedule(*f.schedule);
    if (!schedule.ok()) return Annotate(schedule.status(), "--schedule");
    spec->set_lr_schedule(*schedule);
  }
  if (f.warmup_ratio) spec->set_warmup_ratio(*f.warmup_ratio);
  if (f.warmup_steps) spec->set_warmup_steps(*f.warmup_steps);
  if (f.weight_decay) spec->set_weight_decay(*f.weight_decay);
  if (f.max_seq_len) spec->set_max_seq_len(*f.max_seq_len);
  if (f.seed) spec->set_seed(*f.seed);
  if (f.eval_interval) spec->set_eval_interval_steps(*f.eval_interval);
  if (f.checkpoint_interval) spec->set_checkpoint_interval_steps(*f.checkpoint_interval);
  if (f.max_attempts) spec->set_max_attempts(*f.max_attempts);
  if (f.workers) spec->set_workers(*f.workers);
  if (f.export_merged) spec->set_export_merged(*f.export_merged);
  if (f.skip_bad_lines) spec->set_skip_bad_lines(*f.skip_bad_lines);
  if (f.init_from) {
    const std::vector<std::string> parts = absl::StrSplit(*f.init_from, '@');
    int64_t step = 0;
    if (parts.size() > 2 || parts[0].empty() ||
        (parts.size() == 2 && (!absl::SimpleAtoi(parts[1], &step) || step < 1))) {
      return UsageError(absl::StrCat(
          "--init-from: expected JOB (its adapter) or JOB@STEP (a kept checkpoint), got '",
          *f.init_from, "'"));
    }
    spec->mutable_init_from()->set_job(parts[0]);
    spec->mutable_init_from()->set_step(step);
  }
  if (f.name) request->set_display_name(*f.name);
  if (f.request_id) request->set_request_id(*f.request_id);
  for (const std::string& label : f.labels) {
    ASSIGN_OR_RETURN(auto kv, ParseLabel(label, "--label"));
    (*request->mutable_labels())[kv.first] = kv.second;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplySubmitFlags(const SubmitFlags& f, v1::CreateJobRequest* request) {
  absl::Status status = ApplyFlags(f, request);
  if (status.ok()) return status;
  return UsageError(status.message());
}

}  // namespace peftd::cli
