#include "worker/run_job.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "adapters/peft_files.h"
#include "common/host_memory.h"
#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/memory_estimate.h"
#include "common/model_config.h"
#include "common/status.h"
#include "common/status_payload.h"
#include "worker/data/dataset.h"
#include "worker/data/packing.h"
#include "worker/data/tokenizer.h"
#include "worker/init_weights.h"
#include "worker/load_trainable.h"
#include "worker/merged_export.h"
#include "worker/model/hf_loader.h"
#include "worker/model/tiny_model.h"
#include "worker/spec_adapter.h"
#include "worker/train/memory_batches.h"
#include "worker/train/peft_llama.h"
#include "worker/train/trainer.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
using train::LogLevel;
using train::Phase;

constexpr char kBuiltinModel[] = "tiny-llama";
constexpr char kCheckpointPrefix[] = "step-";

class NullSink : public train::ProgressSink {};

bool IsCancelled(const std::atomic<bool>* cancelled) {
  return cancelled && cancelled->load(std::memory_order_relaxed);
}

absl::Status CancelledWhile(const char* what) {
  return absl::CancelledError(absl::StrCat("cancelled while ", what));
}

// Whether `path` lies inside `root` (both canonical or weakly canonical).
bool Inside(const fs::path& path, const fs::path& root) {
  const fs::path rel = path.lexically_relative(root);
  return !rel.empty() && *rel.begin() != "..";
}

std::string ListModels(const fs::path& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory() && fs::exists(e.path() / "config.json")) {
      names.push_back(e.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  if (names.size() > 10) names.resize(10);
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

// Writes the built-in tiny model as root/tiny-llama, atomically (workers may race for it).
absl::Status WriteBuiltinModel(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  const fs::path tmp =
      dir.parent_path() / absl::StrCat(".", dir.filename().string(), ".tmp-", ::getpid());
  fs::remove_all(tmp, ec);
  RETURN_IF_ERROR(model::WriteTinyModel(tmp.string()));
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp);
    if (!fs::exists(dir / "config.json")) {
      return absl::InternalError(
          absl::StrCat("writing the built-in model into ", dir.string(), ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

v1::DatasetStats ToProto(const data::DatasetStats& s) {
  v1::DatasetStats p;
  p.set_records(s.records);
  p.set_tokens(s.tokens);
  p.set_truncated_records(s.truncated_records);
  p.set_skipped_lines(s.skipped_lines);
  return p;
}

// Reads one dataset; errors say which dataset of the job is at fault.
absl::StatusOr<data::LoadedDataset> ReadDataset(const char* field, const std::string& id,
                                                const std::string& path, const std::string& name,
                                                const data::Tokenizer& tokenizer,
                                                data::DatasetOptions options,
                                                train::ProgressSink* sink) {
  const std::string what = absl::StrCat(field, " '", id, "'");
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no file"));
  options.display_name = name;  // the uploaded name, not the cache's sha256.jsonl
  std::vector<data::LineError> errors;
  absl::StatusOr<data::LoadedDataset> loaded = data::LoadDataset(path, tokenizer, options, &errors);
  if (!loaded.ok()) {
    // The job's error names the dataset field and its first bad line (JobError.field / .line).
    absl::Status st = WithField(Annotate(loaded.status(), what), field);
    return errors.empty() ? st : WithLine(st, errors.front().line);
  }
  const data::DatasetStats& s = loaded->stats;
  sink->OnLog(LogLevel::kInfo,
              absl::StrFormat("%s: %d records (%s), %d tokens, %d truncated to max_seq_len %d",
                              what, s.records, loaded->format, s.tokens, s.truncated_records,
                              options.max_seq_len));
  if (s.skipped_lines > 0) {
    std::vector<std::string> first;
    for (size_t i = 0; i < errors.size() && i < 5; ++i) {
      const auto& e = errors[i];
      first.push_back(absl::StrCat("line ", e.line, e.field.empty() ? "" : " \"" + e.field + "\"",
                                   ": ", e.reason));
    }
    sink->OnLog(LogLevel::kWarning,
                absl::StrCat(what, ": skipped ", s.skipped_lines,
                             " bad lines (skip_bad_lines is set): ", absl::StrJoin(first, "; ")));
  }
  return loaded;
}

// An id the model cannot embed would only surface as an index error deep inside LibTorch.
absl::Status CheckVocabulary(const std::vector<data::Example>& examples, int64_t vocab_size,
                             const char* field) {
  for (size_t i = 0; i < examples.size(); ++i) {
    // A seq2seq example's targets are embedded by the decoder.
    for (const std::vector<int64_t>* ids : {&examples[i].input_ids, &examples[i].target_ids}) {
      for (int64_t id : *ids) {
        if (id < 0 || id >= vocab_size) {
          return absl::FailedPreconditionError(absl::StrCat(
              field, ": record ", i + 1, " has token id ", id, ", outside the model's vocabulary (",
              "vocab_size ", vocab_size, "): the tokenizer does not belong to base_model"));
        }
      }
    }
  }
  return absl::OkStatus();
}

// Moves a finished export from its temporary folder into place, so a half-written export is
// never taken for a complete one.
absl::Status Publish(const fs::path& tmp, const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("moving ", tmp.string(), ": ", ec.message()));
  return absl::OkStatus();
}

int64_t FileBytes(const std::string& path) {
  std::error_code ec;
  const auto size = path.empty() ? 0 : fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

// RESOURCE_EXHAUSTED before anything is allocated when the job's estimated peak does not fit
// this host (common/memory_estimate.h).
absl::Status CheckMemoryBeforeLoading(const v1::JobSpec& spec, const SpecOnModel& resolved,
                                      const JobInputs& in, const RunJobOptions& options,
                                      train::ProgressSink* sink) {
  const MemoryEstimate estimate = EstimatePeakMemory(
      spec, resolved, FileBytes(in.training_data_path) + FileBytes(in.validation_data_path));
  int64_t available = options.memory_limit_bytes;
  std::string what = "this worker's memory limit (RunJobOptions.memory_limit_bytes)";
  if (available <= 0) {
    absl::StatusOr<int64_t> usable = UsableMemoryBytes();
    if (!usable.ok()) {
      sink->OnLog(LogLevel::kWarning, absl::StrCat("memory estimate ", estimate.Summary(),
                                                   " not checked: ", usable.status().message()));
      return absl::OkStatus();
    }
    available = *usable;
    what = "this worker's host (MemTotal, or the cgroup limit when lower)";
  }
  RETURN_IF_ERROR(CheckMemoryFits(estimate, available, what));
  sink->OnLog(LogLevel::kDebug, absl::StrCat("memory estimate ", estimate.Summary(), " of ",
                                             GiB(available), " usable"));
  return absl::OkStatus();
}

absl::StatusOr<JobOutputs> RunJobImpl(const JobInputs& in, train::ProgressSink* sink,
                                      const std::atomic<bool>* cancelled,
                                      const RunJobOptions& options, int64_t* batch_size) {
  sink->OnPhase(Phase::kLoadingModel);
  v1::JobSpec spec = WithDefaults(in.spec);
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  *batch_size = spec.batch_size();
  ASSIGN_OR_RETURN(const std::string model_dir, ResolveBaseModel(in.model_root, spec.base_model()));
  const std::string model_what = absl::StrCat("base_model '", spec.base_model(), "'");
  ASSIGN_OR_RETURN(model::ModelConfig config, [&]() -> absl::StatusOr<model::ModelConfig> {
    auto c = model::ReadModelConfig(model_dir);
    if (!c.ok()) return Annotate(c.status(), model_what);
    return c;
  }());
  // The server ran the same checks at submit; `peftd-worker train` has no server in front of it,
  // and the host may have less memory than the one the server judged by.
  ApplyModelDefaults(in.spec, config, &spec);
  ASSIGN_OR_RETURN(const SpecOnModel resolved, ResolveSpecOnModel(spec, config));
  RETURN_IF_ERROR(CheckMemoryBeforeLoading(spec, resolved, in, options, sink));
  absl::StatusOr<std::unique_ptr<data::Tokenizer>> tokenizer = data::LoadTokenizer(model_dir);
  if (!tokenizer.ok()) return Annotate(tokenizer.status(), model_what);

  const data::DatasetOptions dataset_options = DatasetOptionsFromSpec(spec);
  ASSIGN_OR_RETURN(
      data::LoadedDataset train_set,
      ReadDataset("training_dataset_id", spec.training_dataset_id(), in.training_data_path,
                  in.training_data_name, **tokenizer, dataset_options, sink));
  std::optional<data::LoadedDataset> validation_set;
  if (!spec.validation_dataset_id().empty() || !in.validation_data_path.empty()) {
    ASSIGN_OR_RETURN(
        validation_set,
        ReadDataset("validation_dataset_id", spec.validation_dataset_id(), in.validation_data_path,
                    in.validation_data_name, **tokenizer, dataset_options, sink));
  }
  RETURN_IF_ERROR(CheckVocabulary(train_set.examples, config.vocab_size, "training_dataset_id"));
  if (validation_set) {
    RETURN_IF_ERROR(
        CheckVocabulary(validation_set->examples, config.vocab_size, "validation_dataset_id"));
  }
  if (IsCancelled(cancelled)) return CancelledWhile("loading");

  if (spec.task() != v1::SEQ_CLS && spec.packing()) {
    // Steps per epoch count rows, so packing comes before the plan.
    data::PackingStats packed;
    train_set.examples =
        data::PackExamples(std::move(train_set.examples), spec.max_seq_len(), spec.seed(), &packed);
    sink->OnLog(
        LogLevel::kInfo,
        absl::StrFormat("packing: %d training records in %d rows of %d tokens, %.1f%% "
                        "of the rows' positions are real tokens",
                        packed.records, packed.rows, packed.row_length, 100 * packed.Efficiency()));
    if (validation_set) {
      validation_set->examples =
          data::PackExamples(std::move(validation_set->examples), spec.max_seq_len(), spec.seed());
    }
  }
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  ASSIGN_OR_RETURN(RunPlan plan,
                   PlanRun(spec, static_cast<int64_t>(train_set.examples.size()), hardware));
  torch::set_num_threads(plan.num_threads);

  model::LoadOptions load;
  load.device = model::DefaultDevice();
  load.seed = plan.seed;
  load.num_labels = plan.num_labels;
  const int64_t total_steps = plan.trainer.total_steps;
  // The adapter's initialisation depends on the seed alone, not on what loading drew.
  ASSIGN_OR_RETURN(LoadedTrainable loaded, LoadTrainable(model_dir, config, model_what, load,
                                                         plan.adapter, total_steps, plan.seed));
  adapters::PeftModel* peft = loaded.peft;
  JobOutputs out;
  out.train_stats = ToProto(train_set.stats);
  if (validation_set) out.validation_stats = ToProto(validation_set->stats);
  const adapters::ParameterCount count = peft->Count();
  out.trainable_parameters = count.trainable;
  out.total_parameters = count.total;
  out.total_steps = total_steps;
  {
    const adapters::AdapterConfig& c = peft->config();
    std::string extra;
    if (c.method == adapters::MethodKind::kAdaDhp) {
      extra = absl::StrCat("; AdaDHP keeps ", c.adadhp.target_num, " modules from step ",
                           c.adadhp.tfinal);
    }
    sink->OnLog(
        LogLevel::kInfo,
        absl::StrFormat("%s%s on %d modules of %s (%s): %d trainable of %d parameters "
                        "(%.4f%%); %d steps of %d x %d sequences; device %s, %d threads%s",
                        adapters::MethodName(c.method), c.gate ? "_S" : "",
                        peft->module_names().size(), spec.base_model(), config.architecture,
                        count.trainable, count.total, count.trainable_percent(), total_steps,
                        plan.batch_size, plan.trainer.gradient_accumulation_steps,
                        load.device.str(), plan.num_threads, extra));
  }
  int64_t pad_id = (*tokenizer)->special().pad_id;
  if (pad_id < 0) pad_id = config.pad_token_id;
  if (pad_id < 0) pad_id = config.eos_token_id;
  if (pad_id < 0 || pad_id >= config.vocab_size) pad_id = 0;  // masked out: any valid id works

  train::MemoryBatchSource source(std::move(train_set.examples), plan.batch_size, pad_id, plan.seed,
                                  plan.classification, /*group_by_length=*/!plan.packing);
  train::DataParallel* const dp = options.data_parallel;
  if (dp) source.SetShard(dp->rank(), dp->world_size());
  std::optional<train::MemoryEvalSource> eval;
  if (validation_set) {
    eval.emplace(std::move(validation_set->examples), plan.batch_size, pad_id, plan.classification);
  }
  train::TrainerOptions trainer_options = plan.trainer;
  const fs::path work(in.work_dir);
  trainer_options.checkpoint_dir = (work / "checkpoints").string();
  trainer_options.checkpoint_on_cancel = options.checkpoint_on_cancel;
  trainer_options.data_parallel = dp;
  std::error_code ec;
  fs::create_directories(trainer_options.checkpoint_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("creating ", trainer_options.checkpoint_dir, ": ", ec.message()));
  }
  train::Trainer trainer(trainer_options, loaded.trainable.get(), &source, eval ? &*eval : nullptr,
                         sink, cancelled);
  if (in.init && !in.resume_checkpoint_dir) {
    RETURN_IF_ERROR(ApplyInitWeights(*in.init, *loaded.model, *peft, trainer, sink));
  }
  if (eval && options.eval_before_training && !in.resume_checkpoint_dir) {
    ASSIGN_OR_RETURN(train::EvalMetrics before, trainer.Evaluate(0));
    out.initial_eval_loss = before.loss;
  }
  ASSIGN_OR_RETURN(train::TrainResult result, trainer.Run(in.resume_checkpoint_dir));
  out.steps = result.steps;
  out.tokens_seen = result.tokens_seen;
  if (in.resume_checkpoint_dir) {
    out.resumed_from_step = result.steps - static_cast<int64_t>(result.losses.size());
  }
  out.final_train_loss = result.final_train_loss;
  out.final_eval_loss = result.final_eval_loss;
  out.final_eval_accuracy = result.final_eval_accuracy;
  out.final_gate_sparsity = result.final_gate_sparsity;
  out.stopped_early = result.stopped_early;
  out.train_seconds = result.train_seconds;
  if (dp && dp->rank() != 0) return out;  // rank 0 exports the adapter every rank holds

  sink->OnPhase(Phase::kExporting);
  if (IsCancelled(cancelled)) return CancelledWhile("exporting the adapter");
  std::map<std::string, torch::Tensor> modules_to_save;
  if (loaded.roberta != nullptr) {
    modules_to_save = loaded.roberta->ModulesToSave();
  } else if (loaded.deberta != nullptr) {
    modules_to_save = loaded.deberta->ModulesToSave();
  } else if (plan.classification) {
    modules_to_save["score.weight"] = loaded.llama->model()->score->weight;
  }
  const fs::path adapter_tmp = work / "adapter.tmp";
  fs::remove_all(adapter_tmp, ec);
  RETURN_IF_ERROR(adapters::SaveAdapter(*peft, adapter_tmp.string(), modules_to_save));
  if (IsCancelled(cancelled)) return CancelledWhile("exporting the adapter");
  RETURN_IF_ERROR(Publish(adapter_tmp, work / "adapter"));
  out.adapter_dir = (work / "adapter").string();
  sink->OnLog(LogLevel::kInfo, absl::StrCat("adapter written to ", out.adapter_dir));

  if (spec.export_merged()) {
    // The server refuses the unmergeable jobs it can tell at submit; `peftd-worker train` gets a
    // warning.
    std::string why_not = UnmergeableReason(*peft);
    MergedBiases biases;
    if (why_not.empty()) {
      biases = PlanMergedBiases(*peft, resolved.config);
      why_not = biases.why_not;
    }
    if (!why_not.empty()) {
      sink->OnLog(LogLevel::kWarning,
                  absl::StrCat("export_merged: no merged model: ", why_not,
                               "; load the base model with the adapter instead"));
    } else {
      const fs::path merged_tmp = work / "merged.tmp";
      RETURN_IF_ERROR(
          ExportMerged(*peft, resolved.config, biases, model_dir, merged_tmp, spec, cancelled));
      if (IsCancelled(cancelled)) return CancelledWhile("exporting the merged model");
      RETURN_IF_ERROR(Publish(merged_tmp, work / "merged"));
      out.merged_dir = (work / "merged").string();
      sink->OnLog(LogLevel::kInfo, absl::StrCat("merged model written to ", out.merged_dir));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ResolveBaseModel(const std::string& model_root,
                                             const std::string& base_model) {
  if (base_model.empty()) return absl::InvalidArgumentError("base_model: required");
  std::error_code ec;
  if (model_root.empty()) {
    const fs::path p(base_model);
    if (!fs::exists(p / "config.json", ec)) {
      return absl::NotFoundError(
          absl::StrCat("base_model: no model folder (with a config.json) at '", base_model, "'"));
    }
    return fs::weakly_canonical(p, ec).string();
  }
  fs::path root = fs::weakly_canonical(fs::absolute(model_root, ec), ec);
  const fs::path given(base_model);
  const fs::path candidate = fs::weakly_canonical(given.is_absolute() ? given : root / given, ec);
  if (!Inside(candidate, root)) {
    return absl::InvalidArgumentError(absl::StrCat("base_model: '", base_model,
                                                   "' is outside the model root ", root.string(),
                                                   ": name a folder inside it"));
  }
  if (base_model == kBuiltinModel && !fs::exists(candidate / "config.json", ec)) {
    RETURN_IF_ERROR(WriteBuiltinModel(candidate));
  }
  if (!fs::exists(candidate / "config.json", ec)) {
    return absl::NotFoundError(absl::StrCat("base_model: no model '", base_model,
                                            "' (a folder with a config.json) under the model root ",
                                            root.string(), " (models there: ", ListModels(root),
                                            ")"));
  }
  // Symlinks inside the root may point anywhere: check where they really lead.
  const fs::path real = fs::canonical(candidate, ec);
  const fs::path real_root = fs::canonical(root, ec);
  if (ec || !Inside(real, real_root)) {
    return absl::InvalidArgumentError(absl::StrCat("base_model: '", base_model,
                                                   "' leads outside the model root ", root.string(),
                                                   " (through a symlink)"));
  }
  return real.string();
}

int64_t CheckpointStep(const std::string& checkpoint_dir) {
  const std::string name = fs::path(checkpoint_dir).filename().string();
  if (name.rfind(kCheckpointPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::strlen(kCheckpointPrefix));
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

std::optional<std::string> NewestCheckpoint(const std::string& checkpoint_root) {
  std::optional<std::string> best;
  int64_t best_step = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(checkpoint_root, ec)) {
    const int64_t step = CheckpointStep(e.path().string());
    if (step > best_step && fs::exists(e.path() / "checkpoint.safetensors")) {
      best_step = step;
      best = e.path().string();
    }
  }
  return best;
}

absl::StatusOr<JobOutputs> RunJob(const JobInputs& inputs, train::ProgressSink* sink,
                                  const std::atomic<bool>* cancelled,
                                  const RunJobOptions& options) {
  NullSink null_sink;
  if (!sink) sink = &null_sink;
  int64_t batch_size = inputs.spec.batch_size();
  try {
    return RunJobImpl(inputs, sink, cancelled, options, &batch_size);
  } catch (const c10::Error& e) {
    // STYLE.md: LibTorch's exceptions stop here and become a failure a user can act on.
    const std::string what = e.what_without_backtrace();
    if (what.find("out of memory") != std::string::npos ||
        what.find("can't allocate memory") != std::string::npos) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "out of memory with batch_size ", batch_size,
          ": lower batch_size (and raise gradient_accumulation_steps) or max_seq_len"));
    }
    return absl::InternalError(absl::StrCat("LibTorch error: ", what));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory with batch_size ", batch_size,
                     ": lower batch_size (and raise gradient_accumulation_steps) or max_seq_len"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
}

JobRunner MakeJobRunner(RunJobOptions options) {
  return [options](const JobInputs& inputs, train::ProgressSink* sink,
                   const std::atomic<bool>* cancelled) {
    return RunJob(inputs, sink, cancelled, options);
  };
}

}  // namespace peftd::worker
