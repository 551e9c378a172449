#include "clients/cli/spec_request.h"

#include <filesystem>
#include <optional>
#include <ostream>

#include "clients/cli/dataset_upload.h"
#include "clients/cli/exit_codes.h"
#include "clients/cli/format.h"
#include "clients/cli/job_spec_file.h"

namespace peftd::cli {
namespace {

namespace fs = std::filesystem;

// Replaces a dataset value that names a local file by the id the server gives it on upload.
// Returns 0 or the exit code of the failure (already reported).
int ResolveDataset(Cli& cli, std::string* value, const std::string& base_dir, const char* what,
                   bool skip_bad_lines) {
  if (value->empty()) return kExitOk;
  auto ref = ResolveDatasetRef(*value, base_dir, what);
  if (!ref.ok()) return cli.Fail(ref.status());
  if (ref->path.empty()) {
    *value = ref->id;
    return kExitOk;
  }
  v1::Dataset dataset;
  // A job that skips bad lines may train on a file that has some: the server keeps their count.
  grpc::Status status = UploadDatasetFile(cli, ref->path, skip_bad_lines, &dataset);
  if (!status.ok()) {
    const int code = cli.Fail(status, "uploading " + ref->path);
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && !skip_bad_lines) {
      cli.err() << "  fix those lines, or train on the others with --skip-bad-lines\n";
    }
    return code;
  }
  if (!cli.json()) cli.out() << "uploaded " << DescribeDataset(dataset) << "\n";
  *value = dataset.id();
  return kExitOk;
}

absl::Status CheckRequired(const v1::JobSpec& spec) {
  if (spec.base_model().empty()) {
    return UsageError(
        "the job has no base model: give --model NAME or base_model in the job file "
        "(`peftctl models list` shows the names)");
  }
  if (spec.method() == v1::METHOD_UNSPECIFIED) {
    return UsageError(
        "the job has no method: give --method lora|dora|adalora|hut|adadhp or method in the job "
        "file");
  }
  if (spec.training_dataset_id().empty()) {
    return UsageError(
        "the job has no training data: give --train FILE|ds-ID or training_dataset_id in the "
        "job file");
  }
  return absl::OkStatus();
}

// Binds an optional flag: set only when given, so that it overrides the job file only then.
template <typename T>
CLI::Option* AddOptional(CLI::App* app, const std::string& name, std::optional<T>& target,
                         const std::string& help) {
  return app->add_option_function<T>(
      name, [&target](const T& value) { target = value; }, help);
}

}  // namespace

int BuildJobRequest(Cli& cli, const SubmitFlags& flags, v1::CreateJobRequest* request) {
  std::string base_dir;
  if (!flags.file.empty()) {
    auto spec = LoadJobSpecFile(flags.file);
    if (!spec.ok()) return cli.Fail(spec.status());
    *request->mutable_spec() = *std::move(spec);
    base_dir = fs::path(flags.file).parent_path().string();
  }
  absl::Status applied = ApplySubmitFlags(flags, request);
  if (!applied.ok()) return cli.Fail(applied);
  absl::Status required = CheckRequired(request->spec());
  if (!required.ok()) return cli.Fail(required);
  if (request->request_id().empty()) request->set_request_id(RandomRequestId());

  v1::JobSpec* spec = request->mutable_spec();
  if (int code = ResolveDataset(cli, spec->mutable_training_dataset_id(), base_dir,
                                "--train / training_dataset_id", spec->skip_bad_lines())) {
    return code;
  }
  if (int code = ResolveDataset(cli, spec->mutable_validation_dataset_id(), base_dir,
                                "--val / validation_dataset_id", spec->skip_bad_lines())) {
    return code;
  }

  return kExitOk;
}

void AddSpecFlags(CLI::App* sub, SubmitFlags& f) {
  sub->add_option("-f,--file", f.file,
                  "Job file: the JobSpec as protobuf JSON, or the same in YAML");
  AddOptional(sub, "--model", f.model, "Base model (a name from `peftctl models list`)");
  AddOptional(sub, "--method", f.method, "lora, dora, adalora, hut or adadhp");
  sub->add_flag_function(
      "--gate,!--no-gate", [&f](int64_t n) { f.gate = n > 0; },
      "Turn the token gate (_S) on (or off with --no-gate)");
  AddOptional(sub, "--gate-s", f.gate_s,
              "Gate threshold step size s (default 4e-5; implies --gate)");
  AddOptional(sub, "--gate-lambda", f.gate_lambda,
              "Gate sparsity pressure lambda (default 1e-6; implies --gate)");
  AddOptional(sub, "--train", f.train, "Training data: a local JSONL file (uploaded) or a ds- id");
  AddOptional(sub, "--val", f.val, "Validation data: a local JSONL file or a ds- id");
  AddOptional(sub, "--steps", f.steps, "Optimizer steps (0 = from --epochs)");
  AddOptional(sub, "--epochs", f.epochs, "Passes over the training data (default 1)");
  AddOptional(sub, "--lr", f.lr, "Peak learning rate (default 2e-4)");
  AddOptional(sub, "--schedule", f.schedule, "Learning-rate schedule: linear, cosine or constant");
  AddOptional(sub, "--warmup-ratio", f.warmup_ratio, "Fraction of steps of linear warmup");
  AddOptional(sub, "--warmup-steps", f.warmup_steps, "Warmup steps (overrides --warmup-ratio)");
  AddOptional(sub, "--weight-decay", f.weight_decay, "AdamW weight decay (default 0)");
  AddOptional(sub, "--batch-size", f.batch_size, "Sequences per micro-batch (default 8)");
  AddOptional(sub, "--grad-accum", f.grad_accum, "Micro-batches per optimizer step (default 1)");
  AddOptional(sub, "--max-seq-len", f.max_seq_len, "Tokens per sequence (default 512)");
  AddOptional(sub, "--rank", f.rank, "Rank: lora.r, adalora.target_r or hut.r (default 8)");
  AddOptional(sub, "--alpha", f.alpha, "LoRA/AdaLoRA scale numerator alpha");
  AddOptional(sub, "--dropout", f.dropout, "Adapter-branch dropout (LoRA/DoRA/AdaLoRA)");
  sub->add_option("--target-modules", f.target_modules,
                  "Modules to adapt, comma-separated or repeated (default q_proj,v_proj; "
                  "re:REGEX for a regex)");
  AddOptional(sub, "--task", f.task, "causal_lm (default), seq_cls or seq_2_seq_lm");
  AddOptional(sub, "--num-labels", f.num_labels, "Classes, for --task seq_cls");
  sub->add_option("--label-names", f.label_names,
                  "Classification: the names string labels map to, in id order (comma-separated)");
  AddOptional(sub, "--chat-template", f.chat_template,
              "For messages records: chatml, llama3, plain");
  AddOptional(sub, "--seed", f.seed, "RNG seed (default 42)");
  AddOptional(sub, "--eval-interval", f.eval_interval, "Evaluate every N steps (0 = at the end)");
  AddOptional(sub, "--checkpoint-interval", f.checkpoint_interval,
              "Checkpoint every N steps (default 50)");
  AddOptional(sub, "--max-attempts", f.max_attempts, "Attempts before the job fails (default 3)");
  AddOptional(sub, "--workers", f.workers,
              "Ranks of a data-parallel gang, each with --batch-size (default 1, at most 64)");
  AddOptional(sub, "--init-from", f.init_from,
              "Start from the adapter of job JOB, or its checkpoint of step N with JOB@N");
  sub->add_flag_function(
      "--export-merged", [&f](int64_t n) { f.export_merged = n > 0; },
      "Also export a merged full model (ungated, mergeable methods)");
  sub->add_option("--label", f.labels, "A key=value label (repeatable)")->check(CheckLabelFlag);
  sub->add_flag_function(
      "--skip-bad-lines", [&f](int64_t n) { f.skip_bad_lines = n > 0; },
      "Train on the valid lines of a dataset with bad ones (skip_bad_lines; they are counted)");
  AddOptional(sub, "--name", f.name, "Display name");
  AddOptional(sub, "--request-id", f.request_id,
              "Idempotency key (default: a random one, printed); resubmitting with the same id "
              "never creates a second job");
}

}  // namespace peftd::cli
