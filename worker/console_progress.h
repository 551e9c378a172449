// The `train` command's live progress on stderr:
//   step 12/40  loss 3.1234  eval 3.0012  lr 1.20e-03  1234 tok/s  sparsity 0.420  ETA 0:32
// On a terminal the line is rewritten in place (\r) at every step; otherwise (a file, CI) one line
// is printed every `every_steps` steps and at the last. Evaluations, checkpoints, phases and log
// lines are printed on lines of their own.
#ifndef PEFTD_WORKER_CONSOLE_PROGRESS_H_
#define PEFTD_WORKER_CONSOLE_PROGRESS_H_

#include <cstdio>
#include <mutex>
#include <optional>
#include <string>

#include "worker/train/progress.h"

namespace peftd::worker {

// The progress line of `m` (no newline), given the latest eval loss.
std::string ProgressLine(const train::StepMetrics& m, std::optional<double> eval_loss);
// "1:02:03" / "2:03".
std::string FormatDuration(double seconds);

class ConsoleProgress : public train::ProgressSink {
 public:
  // `out` is not owned. `every_steps` applies when `tty` is false (at least 1).
  ConsoleProgress(std::FILE* out, bool tty, int64_t every_steps);

  void OnPhase(train::Phase phase) override;
  void OnStep(const train::StepMetrics& m) override;
  void OnEval(const train::EvalMetrics& m) override;
  void OnCheckpoint(int64_t step, const std::string& dir) override;
  void OnLog(train::LogLevel level, const std::string& message) override;

  // Ends a pending in-place line, so that what follows starts on a fresh line.
  void Finish();

 private:
  void PrintLine(const std::string& text);  // a line of its own, keeping the live line below

  std::mutex mu_;
  std::FILE* out_;
  bool tty_;
  int64_t every_;
  std::optional<double> eval_loss_;
  std::string live_;  // the in-place line currently shown (tty only)
};

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_CONSOLE_PROGRESS_H_
