#include "worker/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/tensor_file.h"

namespace peftd::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string StepDirName(int64_t step) { return absl::StrFormat("step-%08d", step); }

// c10::Error from LibTorch becomes a job failure a user can act on (STYLE.md).
absl::Status FromTorchError(const c10::Error& e, int64_t batch_size) {
  const std::string what = e.what_without_backtrace();
  if (what.find("out of memory") != std::string::npos ||
      what.find("can't allocate memory") != std::string::npos) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory with batch_size ", batch_size,
                     ": lower batch_size (and raise gradient_accumulation_steps) or max_seq_len"));
  }
  return absl::InternalError(absl::StrCat("LibTorch error: ", what));
}

// Splits "prefix/name" keys back into per-prefix maps.
std::map<std::string, torch::Tensor> WithPrefix(const std::map<std::string, torch::Tensor>& all,
                                                const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : all) {
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  }
  return out;
}

// Data parallelism: the ranks' masking decisions (AdaLoRA, AdaDHP) must be the same, or their
// adapters drift apart silently. One allreduce of the checksum's halves and their negatives
// gives the largest and the smallest value over the ranks.
absl::Status CheckSameDecisions(DataParallel* dp, uint64_t checksum, int64_t step) {
  const int64_t hi = static_cast<int64_t>(checksum >> 32),
                lo = static_cast<int64_t>(checksum & 0xffffffffULL);
  torch::Tensor t = torch::tensor({hi, lo, -hi, -lo}, torch::kLong);
  RETURN_IF_ERROR(dp->Max(t, "the masking checksum"));
  const auto* v = t.data_ptr<int64_t>();
  if (v[0] != -v[2] || v[1] != -v[3]) {
    return absl::InternalError(
        absl::StrCat("rank ", dp->rank(), " of ", dp->world_size(),
                     ": the ranks' masking decisions (AdaLoRA "
                     "rank pattern, AdaDHP active modules) differ after step ",
                     step, ": their reduced gradients diverged; the run cannot continue"));
  }
  return absl::OkStatus();
}

}  // namespace

Trainer::Trainer(TrainerOptions options, TrainableModel* model, BatchSource* train,
                 const EvalSource* eval, ProgressSink* sink, const std::atomic<bool>* cancelled)
    : options_(std::move(options)),
      model_(model),
      train_(train),
      eval_(eval),
      sink_(sink),
      cancelled_(cancelled) {}

void Trainer::Log(LogLevel level, const std::string& message) {
  if (sink_) sink_->OnLog(level, message);
}

absl::StatusOr<TrainResult> Trainer::Run(const std::optional<std::string>& resume_checkpoint) {
  optimizer_ = std::make_unique<AdamW>(model_->Trainable(), options_.adamw);
  if (resume_checkpoint) {
    RETURN_IF_ERROR(LoadCheckpoint(*resume_checkpoint));
    Log(LogLevel::kInfo, absl::StrCat("resumed from step ", step_));
  }
  TrainResult result;
  DataParallel* const dp = options_.data_parallel;
  const bool distributed = dp && dp->world_size() > 1;
  const bool writer = !dp || dp->rank() == 0;  // rank 0 alone writes checkpoints
  std::unique_ptr<GradientBuckets> buckets;
  if (distributed) {
    buckets =
        std::make_unique<GradientBuckets>(dp, optimizer_.get(), options_.allreduce_bucket_bytes);
    result.allreduce_gradient_bytes = buckets->gradient_bytes();
    result.allreduce_buckets = buckets->num_buckets();
  }
  const auto run_start = Clock::now();
  const int64_t steps_at_start = step_;
  model_->SetTraining(true);
  if (sink_) sink_->OnPhase(Phase::kTraining);

  // A reporting window: losses and token counts since the last OnStep.
  double window_loss = 0;
  int64_t window_steps = 0, window_tokens = 0;
  auto window_start = Clock::now();
  int64_t last_batch_size = 0;

  int64_t saved_step = steps_at_start;  // newest step with a checkpoint on disk
  auto cancelled_here = [&](const std::string& where) -> absl::Status {
    if (options_.checkpoint_on_cancel && writer && !options_.checkpoint_dir.empty() &&
        step_ > saved_step) {
      RETURN_IF_ERROR(SaveCheckpoint(step_, /*even_if_cancelled=*/true));
    }
    return absl::CancelledError(absl::StrCat("cancelled ", where, "at step ", step_));
  };

  try {
    while (step_ < options_.total_steps) {
      bool stop = Cancelled();
      if (distributed) {
        // Cancel stops every rank at the same step boundary: a rank that stopped alone would
        // leave the others waiting in their next collective.
        torch::Tensor flag = torch::tensor({int64_t{stop ? 1 : 0}}, torch::kLong);
        RETURN_IF_ERROR(dp->Sum({flag}, "the cancel flag"));
        stop = flag.item<int64_t>() > 0;
      }
      if (stop) return cancelled_here(Cancelled() ? "" : "(on another rank) ");
      const double lr = LearningRate(options_.lr, step_);

      std::vector<Batch> micro;
      micro.reserve(options_.gradient_accumulation_steps);
      int64_t targets = 0, tokens = 0;
      for (int i = 0; i < options_.gradient_accumulation_steps; ++i) {
        micro.push_back(train_->Next());
        targets += micro.back().num_targets;
        tokens += micro.back().num_tokens;
      }
      if (distributed) {
        // The loss is divided by the global target count, so the ranks' gradients add up to the
        // gradient of the whole global batch.
        torch::Tensor counts = torch::tensor({targets, tokens}, torch::kLong);
        RETURN_IF_ERROR(dp->Sum({counts}, "target counts"));
        targets = counts[0].item<int64_t>();
        tokens = counts[1].item<int64_t>();
      }
      // Padding-aware mean over the whole optimizer step: every target token weighs the same,
      // however the step is split into micro-batches.
      const double denom = static_cast<double>(std::max<int64_t>(targets, 1));
      double step_loss_sum = 0;
      for (size_t i = 0; i < micro.size(); ++i) {
        // With checkpoint_on_cancel the step runs to its end: the data position of a half step
        // cannot be checkpointed.
        if (Cancelled() && !options_.checkpoint_on_cancel && !distributed) {
          return absl::CancelledError(absl::StrCat("cancelled at step ", step_));
        }
        // The last backward pass of the step sums its gradients over the ranks as it goes.
        if (buckets && i + 1 == micro.size()) buckets->Arm();
        // The regularization term counts once per step: on rank 0 only when data-parallel.
        const bool add_regularization = i == 0 && writer;
        if (micro[i].input_ids.size(0) == 0) {  // a rank's empty share of a short last batch
          torch::Tensor reg = add_regularization ? model_->RegularizationLoss() : torch::Tensor();
          if (reg.defined()) reg.backward();
          continue;
        }
        last_batch_size = micro[i].input_ids.size(0);
        LossOutput out = model_->Forward(micro[i]);
        torch::Tensor loss = out.loss_sum / denom;
        if (add_regularization) {
          torch::Tensor reg = model_->RegularizationLoss();
          if (reg.defined()) loss = loss + reg;
        }
        loss.backward();
        step_loss_sum += out.loss_sum.item<double>();
      }
      if (distributed) {
        // Once per optimizer step: the gradients (the buckets still under way), then the loss and
        // the gates' τ gradients.
        RETURN_IF_ERROR(buckets->Finish());
        std::vector<torch::Tensor> sums = model_->StepAccumulators();
        torch::Tensor loss_sum = torch::tensor({step_loss_sum}, torch::kDouble);
        sums.push_back(loss_sum);
        RETURN_IF_ERROR(dp->Sum(sums, "the loss and the gates' tau gradients"));
        step_loss_sum = loss_sum.item<double>();
      }
      const double step_loss = step_loss_sum / denom;
      if (!std::isfinite(step_loss)) {
        return absl::InvalidArgumentError(absl::StrCat("loss is ", step_loss, " at step ",
                                                       step_ + 1, ": lower learning_rate (now ",
                                                       options_.lr.peak_lr, ") or check the data"));
      }
      const double grad_norm = optimizer_->ClipGradNorm(options_.max_grad_norm);
      optimizer_->Step(lr);
      model_->AfterOptimizerStep(step_ + 1);
      if (distributed)
        RETURN_IF_ERROR(CheckSameDecisions(dp, model_->DecisionChecksum(), step_ + 1));
      optimizer_->ZeroGrad();
      ++step_;
      tokens_seen_ += tokens;
      result.losses.push_back(step_loss);
      result.final_train_loss = step_loss;

      window_loss += step_loss;
      window_tokens += tokens;
      ++window_steps;
      const bool last = step_ == options_.total_steps;
      const bool eval_now =
          eval_ &&
          ((options_.eval_interval_steps > 0 && step_ % options_.eval_interval_steps == 0) || last);
      const bool checkpoint_now = options_.checkpoint_interval_steps > 0 &&
                                  !options_.checkpoint_dir.empty() &&
                                  step_ % options_.checkpoint_interval_steps == 0 && !last;
      // A step that is evaluated or checkpointed is reported first, whatever log_every_steps
      // says: an eval or checkpoint event never comes before the progress of its own step.
      // Data-parallel ranks all take part (the window's counters are summed), sink or not.
      const bool report_now =
          window_steps >= options_.log_every_steps || last || eval_now || checkpoint_now;
      if (report_now && (sink_ || distributed)) {
        if (distributed)
          RETURN_IF_ERROR(dp->Sum(model_->WindowCounters(), "gate sparsity counters"));
        StepMetrics m;
        m.step = step_;
        m.total_steps = options_.total_steps;
        m.epoch = train_->Epoch();
        m.tokens_seen = tokens_seen_;
        m.loss = window_loss / window_steps;
        m.learning_rate = lr;
        m.grad_norm = grad_norm;
        const double window_seconds = SecondsSince(window_start);
        m.step_seconds = window_seconds / window_steps;
        m.tokens_per_second = window_seconds > 0 ? window_tokens / window_seconds : 0;
        const double elapsed = SecondsSince(run_start);
        m.eta_seconds =
            elapsed / static_cast<double>(step_ - steps_at_start) * (options_.total_steps - step_);
        model_->FillStepMetrics(&m);
        if (sink_) sink_->OnStep(m);
        window_loss = 0;
        window_steps = window_tokens = 0;
        window_start = Clock::now();
      }

      if (eval_now) {
        absl::StatusOr<EvalMetrics> evaluated = Evaluate(step_);
        if (absl::IsCancelled(evaluated.status())) return cancelled_here("during evaluation ");
        ASSIGN_OR_RETURN(EvalMetrics em, std::move(evaluated));
        result.final_eval_loss = em.loss;
        if (em.accuracy >= 0) result.final_eval_accuracy = em.accuracy;
        result.final_gate_sparsity = em.gate_sparsity;
        if (!has_best_eval_ || em.loss < best_eval_loss_) {
          best_eval_loss_ = em.loss;
          has_best_eval_ = true;
          evals_without_improvement_ = 0;
        } else if (options_.early_stopping_patience > 0 &&
                   ++evals_without_improvement_ >= options_.early_stopping_patience) {
          Log(LogLevel::kInfo,
              absl::StrCat("early stopping at step ", step_, ": eval loss has not improved for ",
                           evals_without_improvement_, " evaluations"));
          result.stopped_early = true;
          break;
        }
        if (sink_) sink_->OnPhase(Phase::kTraining);
      }
      if (checkpoint_now) {
        if (writer) RETURN_IF_ERROR(SaveCheckpoint(step_));
        saved_step = step_;
      }
    }
  } catch (const c10::Error& e) {
    return FromTorchError(e, last_batch_size);
  }
  result.steps = step_;
  result.tokens_seen = tokens_seen_;
  result.train_seconds = SecondsSince(run_start);
  if (dp) {
    result.allreduce_seconds = dp->allreduce_seconds();
    result.allreduce_busy_seconds = dp->allreduce_busy_seconds();
  }
  return result;
}

absl::StatusOr<EvalMetrics> Trainer::Evaluate(int64_t step) {
  if (sink_) sink_->OnPhase(Phase::kEvaluating);
  EvalMetrics metrics;
  metrics.step = step;
  torch::NoGradGuard no_grad;
  model_->SetTraining(false);
  model_->BeginEval();
  double loss_sum = 0;
  int64_t targets = 0, correct = 0, sequences = 0;
  bool classification = false;
  for (int64_t i = 0; i < eval_->NumBatches(); ++i) {
    // Data-parallel ranks finish the evaluation and stop together at the next step.
    if (Cancelled() && !(options_.data_parallel && options_.data_parallel->world_size() > 1)) {
      model_->SetTraining(true);
      return absl::CancelledError(absl::StrCat("cancelled during evaluation at step ", step));
    }
    Batch batch = eval_->Get(i);
    LossOutput out = model_->Forward(batch);
    loss_sum += out.loss_sum.item<double>();
    targets += batch.num_targets;
    if (out.correct >= 0) {
      classification = true;
      correct += out.correct;
      sequences += batch.input_ids.size(0);
    }
  }
  metrics.loss = targets > 0 ? loss_sum / targets : 0;
  if (classification && sequences > 0) metrics.accuracy = static_cast<double>(correct) / sequences;
  model_->EndEval(&metrics);
  model_->SetTraining(true);
  if (sink_) sink_->OnEval(metrics);
  return metrics;
}

absl::Status Trainer::SaveCheckpoint(int64_t step, bool even_if_cancelled) {
  if (sink_) sink_->OnPhase(Phase::kCheckpointing);
  const fs::path root(options_.checkpoint_dir);
  const fs::path final_dir = root / StepDirName(step);
  const fs::path tmp_dir = root / (StepDirName(step) + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  fs::create_directories(tmp_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("creating ", tmp_dir.string(), ": ", ec.message()));

  TensorFile file;
  for (const auto& t : optimizer_->params())
    file.tensors["trainable/" + t.name] = t.tensor.detach();
  for (auto& [k, v] : optimizer_->StateDict()) file.tensors["optimizer/" + k] = v;
  for (auto& [k, v] : model_->ExtraState()) file.tensors["model/" + k] = v;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    file.tensors["rng/cpu"] = gen.get_state();
  }
  nlohmann::json trainer = {{"step", step_},
                            {"tokens_seen", tokens_seen_},
                            {"best_eval_loss", best_eval_loss_},
                            {"has_best_eval", has_best_eval_},
                            {"evals_without_improvement", evals_without_improvement_},
                            {"data_position", train_->Position()}};
  file.metadata["trainer"] = trainer.dump();
  if (Cancelled() && !even_if_cancelled)
    return absl::CancelledError("cancelled while checkpointing");
  RETURN_IF_ERROR(WriteTensorFile((tmp_dir / "checkpoint.safetensors").string(), file));
  RETURN_IF_ERROR(model_->ExportAdapter((tmp_dir / "adapter").string()));
  fs::remove_all(final_dir, ec);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("renaming checkpoint: ", ec.message()));

  // Keep the newest few.
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("step-", 0) == 0 &&
        name.find(".tmp") == std::string::npos) {
      dirs.push_back(entry.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  for (size_t i = 0; i + options_.keep_checkpoints < dirs.size(); ++i) fs::remove_all(dirs[i], ec);
  if (sink_) {
    sink_->OnCheckpoint(step, final_dir.string());
    sink_->OnPhase(Phase::kTraining);
  }
  return absl::OkStatus();
}

absl::Status Trainer::InitWeightsFrom(const std::string& dir) {
  const std::string path = (fs::path(dir) / "checkpoint.safetensors").string();
  ASSIGN_OR_RETURN(TensorFile file, ReadTensorFile(path));
  torch::NoGradGuard no_grad;
  const auto trainable = WithPrefix(file.tensors, "trainable/");
  for (const auto& t : model_->Trainable()) {
    auto it = trainable.find(t.name);
    if (it == trainable.end()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": missing trainable tensor ", t.name));
    }
    if (!it->second.sizes().equals(t.tensor.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.name, " has shape ",
                                                     c10::str(it->second.sizes()), ", expected ",
                                                     c10::str(t.tensor.sizes())));
    }
    t.tensor.detach().copy_(it->second);
  }
  return Annotate(model_->LoadExtraState(WithPrefix(file.tensors, "model/")), path);
}

absl::Status Trainer::LoadCheckpoint(const std::string& dir) {
  const std::string path = (fs::path(dir) / "checkpoint.safetensors").string();
  ASSIGN_OR_RETURN(TensorFile file, ReadTensorFile(path));
  auto meta = file.metadata.find("trainer");
  if (meta == file.metadata.end()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no trainer metadata"));
  }
  nlohmann::json trainer = nlohmann::json::parse(meta->second, nullptr, false);
  if (trainer.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad trainer metadata"));
  {
    torch::NoGradGuard no_grad;
    const auto trainable = WithPrefix(file.tensors, "trainable/");
    for (const auto& t : optimizer_->params()) {
      auto it = trainable.find(t.name);
      if (it == trainable.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": missing trainable tensor ", t.name));
      }
      if (!it->second.sizes().equals(t.tensor.sizes())) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.name, " has shape ",
                                                       c10::str(it->second.sizes()), ", expected ",
                                                       c10::str(t.tensor.sizes())));
      }
      t.tensor.detach().copy_(it->second);
    }
  }
  RETURN_IF_ERROR(
      Annotate(optimizer_->LoadStateDict(WithPrefix(file.tensors, "optimizer/")), path));
  RETURN_IF_ERROR(Annotate(model_->LoadExtraState(WithPrefix(file.tensors, "model/")), path));
  auto rng = file.tensors.find("rng/cpu");
  if (rng != file.tensors.end()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng->second);
  }
  step_ = trainer.value("step", int64_t{0});
  tokens_seen_ = trainer.value("tokens_seen", int64_t{0});
  best_eval_loss_ = trainer.value("best_eval_loss", 0.0);
  has_best_eval_ = trainer.value("has_best_eval", false);
  evals_without_improvement_ = trainer.value("evals_without_improvement", 0);
  std::map<std::string, int64_t> position =
      trainer.value("data_position", std::map<std::string, int64_t>{});
  return Annotate(train_->Restore(position), path);
}

}  // namespace peftd::train
