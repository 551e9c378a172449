// `peftd-worker eval --model DIR [--adapter DIR] --inputs ids.json --dump-logits out.safetensors`:
// the logits of a model (with an adapter folder applied) on given token ids, written so that any
// other implementation (HF transformers + PEFT) can be compared with ours. ids.json is
// [[ids...], ...]; rows may differ in length: they are right-padded and an attention mask marks
// the real tokens. The file holds `logits` (F32, [batch, seq, vocab], or [batch, num_labels] for
// a SEQ_CLS adapter) and `attention_mask` (I64, [batch, seq]). With --loss, prints the mean
// next-token cross-entropy over the real tokens.
#ifndef PEFTD_WORKER_EVAL_COMMAND_H_
#define PEFTD_WORKER_EVAL_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace peftd::worker {

struct EvalCommandOptions {
  std::string model_dir;
  std::string adapter_dir;  // optional
  std::string inputs_file;  // ids.json
  std::string dump_logits;  // optional output .safetensors
  bool print_loss = false;
  int threads = 0;  // 0 = the core count
};

struct EvalResult {
  int64_t batch = 0, seq = 0;
  double loss = 0;          // mean next-token loss (causal LM)
  int64_t loss_tokens = 0;  // predicted positions it averages
};

// Parses ids.json: a non-empty array of non-empty arrays of non-negative integers.
absl::StatusOr<std::vector<std::vector<int64_t>>> ParseInputIds(const std::string& text);

absl::StatusOr<EvalResult> RunEval(const EvalCommandOptions& options);

// RunEval for the command line: prints the result, returns the exit code.
int RunEvalCommand(const EvalCommandOptions& options);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_EVAL_COMMAND_H_
