// `peftd-worker train job.json`: one job with no server. The job file is a JobSpec in protobuf
// JSON (worker/job_file.h); base_model is a model folder (relative to the job file, or a name
// under --model-root), training_dataset_id / validation_dataset_id are JSONL files relative to
// the job file. Output folder (--out): job.json (the spec as run), checkpoints/, adapter/,
// merged/ and train_log.jsonl. See docs/worker.md.
#ifndef PEFTD_WORKER_TRAIN_COMMAND_H_
#define PEFTD_WORKER_TRAIN_COMMAND_H_

#include <atomic>
#include <cstdint>
#include <string>

namespace peftd::worker {

struct TrainCommandOptions {
  std::string job_file;
  std::string model_root;   // empty: base_model is a path relative to the job file
  std::string out_dir;      // empty: ./<job file stem>-out
  bool resume = false;      // continue from the newest checkpoint in out_dir
  std::string json_log;     // empty: <out_dir>/train_log.jsonl ("-" = none)
  int64_t print_every = 0;  // progress line every N steps when stderr is not a terminal; 0 = auto
  // Data-parallel training (train::DataParallel): every rank runs this command with the same job
  // and --out; rank 0 serves the rendezvous and alone writes job.json, checkpoints and the
  // adapter; rank R > 0 logs to <out>/train_log.rank<R>.jsonl.
  int world_size = 1;
  int rank = 0;
  std::string rendezvous;  // host:port, required when world_size > 1
  std::string rendezvous_key = "peftd-train";
  int rendezvous_timeout_seconds = 60;
};

// Runs the job; returns the process exit code (0 done, 1 failed, 130 cancelled). Stops cleanly
// at the end of the current step when `cancelled` becomes true, keeping a checkpoint of it.
int RunTrainCommand(const TrainCommandOptions& options, const std::atomic<bool>* cancelled);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_TRAIN_COMMAND_H_
