#include "worker/train_command.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "google/protobuf/util/message_differencer.h"
#include "nlohmann/json.hpp"
#include "worker/console_progress.h"
#include "worker/job_file.h"
#include "worker/json_log_sink.h"
#include "worker/run_job.h"
#include "worker/tee_sink.h"
#include "worker/train/data_parallel.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kSpecFile[] = "job.json";
constexpr int kExitFailed = 1;
constexpr int kExitCancelled = 130;  // the shell's convention for "stopped by SIGINT"

fs::path RelativeTo(const fs::path& base, const std::string& p) {
  const fs::path path(p);
  return (path.is_absolute() ? path : base / path).lexically_normal();
}

// A run may only continue with the spec it started with: another spec would not reproduce it.
absl::Status CheckSameSpec(const fs::path& out, const v1::JobSpec& spec) {
  const fs::path saved = out / kSpecFile;
  if (!fs::exists(saved)) return absl::OkStatus();
  ASSIGN_OR_RETURN(v1::JobSpec before, ReadJobFile(saved.string()));
  google::protobuf::util::MessageDifferencer diff;
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (diff.Compare(before, spec)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("--resume: the job differs from the run in ", out.string(), " (", saved.string(),
                   "): ", report, "resume with the same job, or train into another --out"));
}

struct Prepared {
  JobInputs inputs;
  fs::path out;
  std::string log_path;
};

absl::StatusOr<Prepared> Prepare(const TrainCommandOptions& o) {
  Prepared p;
  ASSIGN_OR_RETURN(v1::JobSpec spec, ReadJobFile(o.job_file));
  const fs::path job_dir = fs::absolute(fs::path(o.job_file)).parent_path();
  p.out = fs::absolute(o.out_dir.empty() ? fs::path(fs::path(o.job_file).stem().string() + "-out")
                                         : fs::path(o.out_dir))
              .lexically_normal();
  JobInputs& in = p.inputs;
  in.job_id = fs::path(o.job_file).stem().string();
  in.attempt = 1;
  if (o.model_root.empty()) {
    if (!spec.base_model().empty()) {
      spec.set_base_model(RelativeTo(job_dir, spec.base_model()).string());
    }
  } else {
    in.model_root = o.model_root;
  }
  if (!spec.training_dataset_id().empty()) {
    in.training_data_path = RelativeTo(job_dir, spec.training_dataset_id()).string();
  }
  if (!spec.validation_dataset_id().empty()) {
    in.validation_data_path = RelativeTo(job_dir, spec.validation_dataset_id()).string();
  }
  in.work_dir = p.out.string();
  in.spec = spec;

  std::error_code ec;
  fs::create_directories(p.out, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--out ", p.out.string(), ": ", ec.message()));
  }
  const fs::path checkpoints = p.out / "checkpoints";
  std::optional<std::string> newest = NewestCheckpoint(checkpoints.string());
  if (o.resume) {
    RETURN_IF_ERROR(CheckSameSpec(p.out, spec));
    in.resume_checkpoint_dir = newest;
  } else if (newest) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--out ", p.out.string(), " holds checkpoints of an earlier run (newest: step ",
        CheckpointStep(*newest), "): pass --resume to continue it, or train into another --out"));
  }
  if (o.rank == 0) {  // data-parallel ranks share --out: rank 0 writes what is shared
    std::ofstream saved(p.out / kSpecFile, std::ios::trunc);
    saved << JobSpecToJson(in.spec);
  }
  const std::string log_name =
      o.rank == 0 ? "train_log.jsonl" : absl::StrCat("train_log.rank", o.rank, ".jsonl");
  p.log_path = o.json_log.empty() ? (p.out / log_name).string() : o.json_log;
  return p;
}

std::string Summary(const JobOutputs& r) {
  std::string s =
      absl::StrFormat("done: %d/%d steps, %d tokens in %s; train loss %.4f", r.steps, r.total_steps,
                      r.tokens_seen, FormatDuration(r.train_seconds), r.final_train_loss);
  if (r.final_eval_loss) {
    absl::StrAppend(&s, "; eval loss ",
                    r.initial_eval_loss ? absl::StrFormat("%.4f -> ", *r.initial_eval_loss) : "",
                    absl::StrFormat("%.4f", *r.final_eval_loss));
  }
  if (r.final_eval_accuracy) absl::StrAppendFormat(&s, ", accuracy %.4f", *r.final_eval_accuracy);
  if (r.final_gate_sparsity > 0)
    absl::StrAppendFormat(&s, "; gate sparsity %.3f", r.final_gate_sparsity);
  if (r.stopped_early) absl::StrAppend(&s, " (stopped early)");
  absl::StrAppendFormat(
      &s, "\ntrainable parameters: %d of %d (%.4f%%)\nadapter: %s\n", r.trainable_parameters,
      r.total_parameters,
      r.total_parameters ? 100.0 * r.trainable_parameters / r.total_parameters : 0.0,
      r.adapter_dir);
  if (!r.merged_dir.empty()) absl::StrAppend(&s, "merged model: ", r.merged_dir, "\n");
  return s;
}

json SummaryJson(const JobOutputs& r) {
  json j = {{"steps", r.steps},
            {"total_steps", r.total_steps},
            {"tokens_seen", r.tokens_seen},
            {"final_train_loss", r.final_train_loss},
            {"train_seconds", r.train_seconds},
            {"trainable_parameters", r.trainable_parameters},
            {"total_parameters", r.total_parameters},
            {"stopped_early", r.stopped_early},
            {"adapter_dir", r.adapter_dir},
            {"train_records", r.train_stats.records()},
            {"train_tokens", r.train_stats.tokens()},
            {"train_truncated_records", r.train_stats.truncated_records()},
            {"train_skipped_lines", r.train_stats.skipped_lines()}};
  if (!r.merged_dir.empty()) j["merged_dir"] = r.merged_dir;
  if (r.resumed_from_step) j["resumed_from_step"] = *r.resumed_from_step;
  if (r.initial_eval_loss) j["initial_eval_loss"] = *r.initial_eval_loss;
  if (r.final_eval_loss) j["final_eval_loss"] = *r.final_eval_loss;
  if (r.final_eval_accuracy) j["final_eval_accuracy"] = *r.final_eval_accuracy;
  if (r.final_gate_sparsity > 0) j["final_gate_sparsity"] = r.final_gate_sparsity;
  if (r.validation_stats.records() > 0) {
    j["validation_records"] = r.validation_stats.records();
    j["validation_tokens"] = r.validation_stats.tokens();
  }
  return j;
}

}  // namespace

// The data-parallel group of --world-size ranks; null for one process.
absl::StatusOr<std::unique_ptr<train::DataParallel>> ConnectRanks(const TrainCommandOptions& o) {
  if (o.world_size <= 1) {
    if (o.rank != 0) return absl::InvalidArgumentError("--rank: must be 0 without --world-size");
    return std::unique_ptr<train::DataParallel>();
  }
  if (o.rendezvous.empty()) {
    return absl::InvalidArgumentError("--rendezvous HOST:PORT is required with --world-size > 1");
  }
  train::DataParallelOptions dp;
  dp.rank = o.rank;
  dp.world_size = o.world_size;
  dp.rendezvous = o.rendezvous;
  dp.key = o.rendezvous_key;
  dp.timeout = std::chrono::seconds(o.rendezvous_timeout_seconds);
  absl::StatusOr<std::unique_ptr<train::DataParallel>> connected = train::DataParallel::Connect(dp);
  if (!connected.ok()) {
    return Annotate(connected.status(),
                    absl::StrCat("--rank ", o.rank, " of --world-size ", o.world_size));
  }
  return connected;
}

int RunTrainCommand(const TrainCommandOptions& options, const std::atomic<bool>* cancelled) {
  if (options.world_size > 1 && (options.rank < 0 || options.rank >= options.world_size)) {
    std::fprintf(stderr, "peftd-worker train: --rank %d: must be below --world-size %d\n",
                 options.rank, options.world_size);
    return kExitFailed;
  }
  absl::StatusOr<Prepared> prepared = Prepare(options);
  if (!prepared.ok()) {
    std::fprintf(stderr, "peftd-worker train: %s\n",
                 std::string(prepared.status().message()).c_str());
    return kExitFailed;
  }
  std::unique_ptr<JsonLogSink> log;
  if (prepared->log_path != "-") {
    auto opened = JsonLogSink::Open(prepared->log_path, options.resume);
    if (!opened.ok()) {
      std::fprintf(stderr, "peftd-worker train: %s\n",
                   std::string(opened.status().message()).c_str());
      return kExitFailed;
    }
    log = std::move(*opened);
  }
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  ConsoleProgress console(stderr, tty, options.print_every > 0 ? options.print_every : 10);
  TeeSink sink({&console, log.get()});
  const JobInputs& in = prepared->inputs;
  if (log) {
    json start = {{"job_file", fs::absolute(options.job_file).string()},
                  {"out", prepared->out.string()},
                  {"pid", ::getpid()}};
    if (in.resume_checkpoint_dir) {
      start["resume_from"] = *in.resume_checkpoint_dir;
      start["resume_step"] = CheckpointStep(*in.resume_checkpoint_dir);
    }
    log->Write("start", std::move(start));
  }
  if (options.resume) {
    console.OnLog(train::LogLevel::kInfo,
                  in.resume_checkpoint_dir
                      ? absl::StrCat("resuming from ", *in.resume_checkpoint_dir)
                      : absl::StrCat("no checkpoint in ", prepared->out.string(),
                                     "/checkpoints yet: starting from step 0"));
  }

  absl::StatusOr<std::unique_ptr<train::DataParallel>> ranks = ConnectRanks(options);
  if (!ranks.ok()) {
    console.Finish();
    if (log) {
      log->Write("error", {{"code", absl::StatusCodeToString(ranks.status().code())},
                           {"message", std::string(ranks.status().message())}});
    }
    std::fprintf(stderr, "peftd-worker train: %s: %s\n",
                 absl::StatusCodeToString(ranks.status().code()).c_str(),
                 std::string(ranks.status().message()).c_str());
    return kExitFailed;
  }
  RunJobOptions run_options;
  run_options.checkpoint_on_cancel = true;
  run_options.data_parallel = ranks->get();
  absl::StatusOr<JobOutputs> result = RunJob(in, &sink, cancelled, run_options);
  console.Finish();
  if (result.ok()) {
    if (log) log->Write("summary", SummaryJson(*result));
    if (options.rank == 0) {
      std::fprintf(stdout, "%s", Summary(*result).c_str());
    } else {
      std::fprintf(stdout, "rank %d of %d done: %lld steps; rank 0 wrote the adapter\n",
                   options.rank, options.world_size, static_cast<long long>(result->steps));
    }
    std::fflush(stdout);
    return 0;
  }
  const absl::Status& st = result.status();
  if (absl::IsCancelled(st) && cancelled && cancelled->load()) {
    std::optional<std::string> newest = NewestCheckpoint((prepared->out / "checkpoints").string());
    if (log) {
      json j = {{"message", std::string(st.message())}};
      if (newest) j["checkpoint"] = *newest;
      log->Write("cancelled", std::move(j));
    }
    std::fprintf(
        stderr, "peftd-worker train: %s.%s\n", std::string(st.message()).c_str(),
        newest ? absl::StrCat(" Checkpoint: ", *newest, "\ncontinue with: peftd-worker train ",
                              options.job_file, " --out ", prepared->out.string(), " --resume")
                     .c_str()
               : "");
    return kExitCancelled;
  }
  if (log) {
    log->Write("error", {{"code", absl::StatusCodeToString(st.code())},
                         {"message", std::string(st.message())}});
  }
  std::fprintf(stderr, "peftd-worker train: %s: %s\n", absl::StatusCodeToString(st.code()).c_str(),
               std::string(st.message()).c_str());
  return kExitFailed;
}

}  // namespace peftd::worker
