// Datasets: a JSONL file of records (common/dataset_records.h) turned into tokenized Examples for
// one task. LibTorch-free.
//
// Causal LM (labels aligned with input_ids, HF convention: the model shifts; -100 = no loss):
//   text               [BOS] text EOS                      loss on every token
//   prompt_completion  [BOS] prompt completion EOS         loss on completion and EOS only
//   messages           the chat template's segments        loss on assistant turns only
//                      (chat_template.h), [BOS] unless the template writes its own
// BOS is prepended when tokenizer.special().add_bos; EOS is appended whenever the model has one
// (so the model learns to stop). A record's text is encoded as one string, as HF does
// (apply_chat_template(tokenize=True), TRL for prompt + completion): the ids are those the model
// sees at inference. The loss starts where the encoding of the prompt alone stops matching; a
// token that spans the boundary is trained (write "Answer:" + " 42", not "Answer: " + "42").
// Sequence classification (class_label set, labels empty):
//   classification       [BOS] text [EOS if add_eos]
//   classification_pair  [BOS] text [EOS if add_eos] SEP text_pair [EOS if add_eos]
//   where SEP is BOS when add_bos (the Llama 2 / Llama 3 tokenizer.json pair template
//   "<s> $A <s> $B"), else EOS when the model has one (Qwen2's HF pair is a bare concatenation;
//   we separate the two texts instead), else nothing.
// Sequence-to-sequence (SEQ_2_SEQ_LM, worker/data/seq2seq_records.h):
//   input_target         input_ids: input EOS, target_ids: target EOS   loss on every target id
//   (as T5's tokenizer: EOS appended to both, no BOS; truncation keeps the EOS, as HF's
//   truncation does before its template adds it: max_seq_len for the input, max_target_len for
//   the target).
// Truncation keeps the first max_seq_len tokens (the end, EOS included, is cut). A record that
// keeps no trainable token (a prompt longer than max_seq_len) is a bad line.
#ifndef PEFTD_WORKER_DATA_DATASET_H_
#define PEFTD_WORKER_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dataset_records.h"
#include "worker/data/chat_template.h"
#include "worker/data/example.h"
#include "worker/data/tokenizer.h"

namespace peftd::data {

enum class Task { kCausalLm, kSequenceClassification, kSeq2SeqLm };

struct DatasetOptions {
  Task task = Task::kCausalLm;
  int64_t max_seq_len = 512;
  int64_t max_target_len = 128;  // kSeq2SeqLm: target tokens, EOS included
  bool truncate = true;          // false: a longer record is a bad line naming its token count
  bool skip_bad_lines = false;
  std::string chat_template = "chatml";  // for messages records
  int num_labels = 0;                    // classification: labels must be in [0, num_labels)
  std::vector<std::string> label_names;  // classification: string labels map to their index
  int num_threads = 0;                   // tokenizing threads; 0 = the machine's cores (max 8)
  // The file's name in messages ("train.jsonl"); empty: the name of the file read (on a worker,
  // the dataset's sha256).
  std::string display_name;
};

struct DatasetStats {
  int64_t records = 0;            // examples produced
  int64_t tokens = 0;             // tokens in them, after truncation (inputs and targets)
  int64_t truncated_records = 0;  // records cut to max_seq_len (or a target to max_target_len)
  int64_t skipped_lines = 0;      // bad lines left out (skip_bad_lines only)
};

struct LoadedDataset {
  std::vector<Example> examples;  // in file order
  DatasetStats stats;
  std::string format;  // FormatName() of the records
};

// Reads and validates the whole file first. With errors (and !skip_bad_lines): InvalidArgument
// whose message lists the bad lines ("train.jsonl: 2 bad lines: line 3: field \"completion\":
// missing; ...") and `errors` (if non-null) receives them all, in line order (with skip_bad_lines
// too, for the job's log). Records longer than max_seq_len are truncated (counted) or, with
// truncate=false, are errors naming the line and the token count. A format that does not fit the
// task, an unknown chat template, or no valid record at all is InvalidArgument too; an unreadable
// file is NOT_FOUND / PERMISSION_DENIED.
absl::StatusOr<LoadedDataset> LoadDataset(const std::string& path, const Tokenizer& tokenizer,
                                          const DatasetOptions& options,
                                          std::vector<LineError>* errors = nullptr);

// The same over JSONL bytes in memory; `name` stands for the file name in messages.
absl::StatusOr<LoadedDataset> LoadDatasetFromBytes(std::string_view jsonl, std::string_view name,
                                                   const Tokenizer& tokenizer,
                                                   const DatasetOptions& options,
                                                   std::vector<LineError>* errors = nullptr);

// Turns single records into Examples (what LoadDataset does for each line). Thread-safe once
// created (the tokenizer is).
class RecordTokenizer {
 public:
  // INVALID_ARGUMENT for an unknown chat template or max_seq_len < 2.
  static absl::StatusOr<RecordTokenizer> Create(const Tokenizer& tokenizer,
                                                const DatasetOptions& options);

  // The Example of a valid record of a format that fits the task. `truncated` (if non-null) says
  // whether max_seq_len cut it. INVALID_ARGUMENT (the reason of a LineError, without the line)
  // when truncate is off and the record is too long, or when truncation leaves no trainable token.
  absl::StatusOr<Example> Tokenize(const Record& record, bool* truncated = nullptr) const;

 private:
  RecordTokenizer(const Tokenizer& tokenizer, const DatasetOptions& options,
                  const ChatTemplate* chat_template);
  absl::StatusOr<Example> Finish(std::vector<int64_t> ids, std::vector<int64_t> labels,
                                 bool* truncated) const;

  const Tokenizer* tokenizer_;
  DatasetOptions options_;
  const ChatTemplate* chat_template_;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_DATASET_H_
