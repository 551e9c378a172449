// What the lease loop needs from the training side: run one leased job to an adapter folder.
// Kept free of LibTorch so the lease loop compiles fast and is tested with a fake runner.
#ifndef PEFTD_WORKER_JOB_RUNNER_H_
#define PEFTD_WORKER_JOB_RUNNER_H_

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "peftd/v1/job.pb.h"
#include "worker/train/progress.h"

namespace peftd::worker {

// The weights a job starts from (JobSpec.init_from), fetched by the lease loop.
struct InitWeights {
  std::string dir;  // holds checkpoint.safetensors, or the adapter folder
  bool adapter = false;
  std::string what;  // for the log: "the adapter of job job-1"
};

// A data-parallel gang's rank (Lease.rank, world_size, rendezvous_*; docs/operating.md "Gangs").
struct GangInputs {
  int rank = 0;
  int world_size = 1;                        // 1: the job runs alone and the rest is unused
  std::string key;                           // unique to the attempt
  std::string address;                       // ranks > 0: rank 0's store, host:port
  std::string advertise_host = "127.0.0.1";  // rank 0: the host the others reach its store at
  int timeout_ms = 120000;                   // the rendezvous and every collective
  // Rank 0: its store listens at this host:port (tell the server now, the others wait for it).
  std::function<void(const std::string& address)> opened;
  // Every rank met.
  std::function<void()> joined;
  // Seconds spent in collectives so far, after each optimizer step.
  std::function<void(double seconds)> allreduce_seconds;
};

struct JobInputs {
  std::string job_id;
  int attempt = 1;
  v1::JobSpec spec;
  std::string model_root;                                // base_model resolves inside it
  std::string training_data_path;                        // local JSONL
  std::string validation_data_path;                      // empty when none
  std::string training_data_name, validation_data_name;  // the uploaded names, for messages
  std::optional<std::string> resume_checkpoint_dir;      // holds checkpoint.safetensors
  std::optional<InitWeights> init;                       // ignored when resuming
  std::string work_dir;  // scratch space for checkpoints and the export
  GangInputs gang;
};

struct JobOutputs {
  std::string adapter_dir;  // PEFT-format adapter folder
  std::string merged_dir;   // merged model folder, when asked and possible
  v1::DatasetStats train_stats;
  v1::DatasetStats validation_stats;
  int64_t trainable_parameters = 0;
  int64_t total_parameters = 0;
  // How the run went (the standalone `train` command prints them).
  int64_t steps = 0;  // optimizer steps done, those before a resume included
  int64_t total_steps = 0;
  int64_t tokens_seen = 0;
  std::optional<int64_t> resumed_from_step;
  double final_train_loss = 0;
  std::optional<double> initial_eval_loss;  // before the first step (not after a resume)
  std::optional<double> final_eval_loss;
  std::optional<double> final_eval_accuracy;  // SEQ_CLS
  double final_gate_sparsity = 0;             // on the validation set, gated runs
  bool stopped_early = false;
  double train_seconds = 0;  // this process's training time
};

// Runs a job; returns CANCELLED when `cancelled` was set. Errors carry the canonical code that
// tells user faults (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION) from system ones.
using JobRunner = std::function<absl::StatusOr<JobOutputs>(
    const JobInputs& inputs, train::ProgressSink* sink, const std::atomic<bool>* cancelled)>;

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_JOB_RUNNER_H_
