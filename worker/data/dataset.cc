#include "worker/data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/data/seq2seq_records.h"

namespace peftd::data {

// The reason of a record longer than max_seq_len without truncate, as found again by Assemble.
constexpr char kLongerThanMaxSeqLen[] = "longer than max_seq_len";
namespace {

constexpr int64_t kIgnore = -100;          // label of a position without loss (HF ignore_index)
constexpr int kMaxThreads = 8;             // tokenizing is memory-bound past a few cores
constexpr size_t kRecordsPerThread = 256;  // below this a thread costs more than it saves

bool FitsTask(Format format, Task task) {
  return IsClassification(format) == (task == Task::kSequenceClassification) &&
         IsSeq2Seq(format) == (task == Task::kSeq2SeqLm);
}

absl::Status FormatTaskMismatch(std::string_view name, Format format, Task task) {
  if (task == Task::kSeq2SeqLm) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": ", FormatName(format),
                     " records are not input/target pairs, but the job's task is SEQ_2_SEQ_LM; use "
                     "input_target records ({\"input\": ..., \"target\": ...})"));
  }
  if (IsSeq2Seq(format)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": ", FormatName(format),
                     " records need task SEQ_2_SEQ_LM (an encoder-decoder base model such as T5)"));
  }
  if (task == Task::kSequenceClassification) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(name), ": ", FormatName(format),
        " records have no label, but the job's task is SEQ_CLS; use classification records "
        "({\"text\", \"label\"} or {\"text\", \"text_pair\", \"label\"}) or task CAUSAL_LM"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(name), ": ", FormatName(format),
      " records need task SEQ_CLS (with num_labels), but the job's task is CAUSAL_LM; use text, "
      "prompt_completion or messages records for CAUSAL_LM"));
}

void Append(std::vector<int64_t>* to, const std::vector<int64_t>& from) {
  to->insert(to->end(), from.begin(), from.end());
}

// Appends the ids of the segments' texts encoded as ONE string (what the model sees at inference,
// and what HF apply_chat_template(tokenize=True) and TRL's prompt+completion give), and labels
// that keep the ids of trainable segments. A segment's tokens end where the encoding of the text
// up to its end stops matching the whole encoding, so a token spanning a boundary (a merge, or a
// SentencePiece word-start mark) goes to the later segment. When encoding each segment alone
// already gives the whole string's ids (byte-level BPE at these boundaries) that is used, which
// costs two encodings instead of one per boundary.
void EncodeSegments(const Tokenizer& tokenizer, const std::vector<ChatSegment>& segments,
                    std::vector<int64_t>* ids, std::vector<int64_t>* labels) {
  std::string text;
  for (const ChatSegment& s : segments) text += s.text;
  const std::vector<int64_t> whole = tokenizer.Encode(text);
  const size_t n = segments.size();
  std::vector<size_t> ends(n, whole.size());  // token end of each segment within `whole`
  bool exact = false;
  if (n > 2) {
    size_t at = 0;
    exact = true;
    for (size_t k = 0; k < n && exact; ++k) {
      const std::vector<int64_t> part = tokenizer.Encode(segments[k].text);
      exact = at + part.size() <= whole.size() &&
              std::equal(part.begin(), part.end(), whole.begin() + at);
      at += part.size();
      ends[k] = at;
    }
    exact = exact && at == whole.size();
  }
  if (!exact) {
    std::string prefix;
    size_t previous = 0;
    for (size_t k = 0; k + 1 < n; ++k) {
      prefix += segments[k].text;
      const std::vector<int64_t> head = tokenizer.Encode(prefix);
      const size_t limit = std::min(head.size(), whole.size());
      size_t common = 0;
      while (common < limit && head[common] == whole[common]) ++common;
      ends[k] = std::max(previous, common);
      previous = ends[k];
    }
    ends[n - 1] = whole.size();
  }
  size_t begin = 0;
  for (size_t k = 0; k < n; ++k) {
    for (size_t t = begin; t < ends[k]; ++t) {
      labels->push_back(segments[k].trainable ? whole[t] : kIgnore);
    }
    begin = ends[k];
  }
  Append(ids, whole);
}

struct Parsed {
  int64_t line;
  Record record;
};

struct Tokenized {
  absl::StatusOr<Example> example = absl::UnknownError("not tokenized");
  bool truncated = false;
};

int ThreadCount(const DatasetOptions& options, size_t records) {
  int n = options.num_threads > 0
              ? options.num_threads
              : std::min<int>(kMaxThreads, std::max(1u, std::thread::hardware_concurrency()));
  n = std::min<int64_t>(n, static_cast<int64_t>(records / kRecordsPerThread) + 1);
  return std::max(1, n);
}

// Tokenizes every record, in parallel over contiguous ranges (the tokenizer is thread-safe).
std::vector<Tokenized> TokenizeAll(const RecordTokenizer& tokenizer,
                                   const std::vector<Parsed>& parsed, int threads) {
  std::vector<Tokenized> out(parsed.size());
  const auto run = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      out[i].example = tokenizer.Tokenize(parsed[i].record, &out[i].truncated);
    }
  };
  if (threads <= 1) {
    run(0, parsed.size());
    return out;
  }
  std::vector<std::thread> pool;
  const size_t per = (parsed.size() + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const size_t begin = std::min(parsed.size(), t * per);
    const size_t end = std::min(parsed.size(), begin + per);
    pool.emplace_back(run, begin, end);
  }
  for (auto& th : pool) th.join();
  return out;
}

}  // namespace

absl::StatusOr<RecordTokenizer> RecordTokenizer::Create(const Tokenizer& tokenizer,
                                                        const DatasetOptions& options) {
  if (options.max_seq_len < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_seq_len: ", options.max_seq_len, " is too small (at least 2)"));
  }
  const ChatTemplate* chat_template = nullptr;
  if (options.task == Task::kCausalLm) {
    ASSIGN_OR_RETURN(chat_template, FindChatTemplate(options.chat_template));
  }
  return RecordTokenizer(tokenizer, options, chat_template);
}

RecordTokenizer::RecordTokenizer(const Tokenizer& tokenizer, const DatasetOptions& options,
                                 const ChatTemplate* chat_template)
    : tokenizer_(&tokenizer), options_(options), chat_template_(chat_template) {}

absl::StatusOr<Example> RecordTokenizer::Tokenize(const Record& record, bool* truncated) const {
  if (truncated) *truncated = false;
  if (!FitsTask(record.format, options_.task)) {
    return FormatTaskMismatch("record", record.format, options_.task);
  }
  if (options_.task == Task::kSeq2SeqLm) {
    return TokenizeInputTarget(*tokenizer_, record, options_.max_seq_len, options_.max_target_len,
                               options_.truncate, truncated);
  }
  const SpecialTokens& special = tokenizer_->special();
  const bool bos = special.add_bos && special.bos_id >= 0;
  const bool eos = special.eos_id >= 0;
  std::vector<int64_t> ids, labels;

  if (options_.task == Task::kSequenceClassification) {
    if (record.label < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("label name \"", record.label_name, "\" has no class id (no label_names)"));
    }
    if (bos) ids.push_back(special.bos_id);
    Append(&ids, tokenizer_->Encode(record.text));
    const bool pair = record.format == Format::kClassificationPair;
    if (pair && special.pair_middle) {
      // The model's own pair template (RoBERTa: <s> A </s></s> B </s>).
      Append(&ids, *special.pair_middle);
    } else {
      if (special.add_eos && eos) ids.push_back(special.eos_id);
      if (pair && bos) {
        ids.push_back(special.bos_id);
      } else if (pair && !special.add_eos && eos) {
        ids.push_back(special.eos_id);
      }
    }
    if (pair) {
      Append(&ids, tokenizer_->Encode(record.text_pair));
      if (special.add_eos && eos) ids.push_back(special.eos_id);
    }
    Example example;
    example.class_label = record.label;
    ASSIGN_OR_RETURN(Example cut, Finish(std::move(ids), {}, truncated));
    example.input_ids = std::move(cut.input_ids);
    return example;
  }

  switch (record.format) {
    case Format::kText:
      if (bos) ids.push_back(special.bos_id);
      Append(&ids, tokenizer_->Encode(record.text));
      if (eos) ids.push_back(special.eos_id);
      break;  // labels stay empty: every token is a target
    case Format::kPromptCompletion: {
      if (bos) {
        ids.push_back(special.bos_id);
        labels.push_back(kIgnore);
      }
      EncodeSegments(*tokenizer_, {{record.prompt, false}, {record.completion, true}}, &ids,
                     &labels);
      if (eos) {
        ids.push_back(special.eos_id);
        labels.push_back(special.eos_id);
      }
      break;
    }
    case Format::kMessages: {
      const RenderedChat chat = chat_template_->Render(record.messages);
      if (bos && !chat.has_bos_text) {
        ids.push_back(special.bos_id);
        labels.push_back(kIgnore);
      }
      EncodeSegments(*tokenizer_, chat.segments, &ids, &labels);
      if (chat.append_eos && eos) {
        ids.push_back(special.eos_id);
        labels.push_back(chat.eos_trainable ? special.eos_id : kIgnore);
      }
      break;
    }
    default:
      break;
  }
  return Finish(std::move(ids), std::move(labels), truncated);
}

absl::StatusOr<Example> RecordTokenizer::Finish(std::vector<int64_t> ids,
                                                std::vector<int64_t> labels,
                                                bool* truncated) const {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n > options_.max_seq_len) {
    if (!options_.truncate) {
      // The advice is given once for the file (Assemble), not once per long record.
      return absl::InvalidArgumentError(absl::StrCat(
          "record is ", n, " tokens, ", kLongerThanMaxSeqLen, " ", options_.max_seq_len));
    }
    ids.resize(options_.max_seq_len);
    if (!labels.empty()) labels.resize(options_.max_seq_len);
    if (truncated) *truncated = true;
  }
  if (options_.task == Task::kCausalLm) {
    // Position 0 is never a target (nothing precedes it), as in the HF shift.
    bool any_target = labels.empty() ? ids.size() >= 2 : false;
    for (size_t i = 1; i < labels.size() && !any_target; ++i) any_target = labels[i] != kIgnore;
    if (!any_target) {
      return absl::InvalidArgumentError(
          n > options_.max_seq_len
              ? absl::StrCat("no token to train on is left after truncation to max_seq_len ",
                             options_.max_seq_len, " (the record is ", n,
                             " tokens); shorten the prompt or raise max_seq_len")
              : std::string("no token to train on (a single token has nothing to predict)"));
    }
  }
  Example example;
  example.input_ids = std::move(ids);
  example.labels = std::move(labels);
  return example;
}

namespace {

RecordOptions RecordOptionsFor(const DatasetOptions& options) {
  RecordOptions record_options;
  record_options.max_errors = 0;  // the caller gets every bad line
  if (options.task == Task::kSequenceClassification) {
    record_options.num_labels = options.num_labels;
    record_options.label_names = options.label_names;
    record_options.require_label_ids = true;
  }
  return record_options;
}

// Tokenizes validated records and merges the bad lines of both steps, in line order.
absl::StatusOr<LoadedDataset> Assemble(ValidationResult validation, std::vector<Parsed> parsed,
                                       std::string_view name, const RecordTokenizer& tokenizer,
                                       const DatasetOptions& options,
                                       std::vector<LineError>* errors) {
  if (validation.format != Format::kUnknown && !FitsTask(validation.format, options.task)) {
    return FormatTaskMismatch(name, validation.format, options.task);
  }
  std::vector<Tokenized> tokenized =
      TokenizeAll(tokenizer, parsed, ThreadCount(options, parsed.size()));

  LoadedDataset out;
  out.format = FormatName(validation.format);
  std::vector<LineError> bad = std::move(validation.errors);
  const size_t validation_errors = bad.size();
  out.examples.reserve(parsed.size());
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (!tokenized[i].example.ok()) {
      bad.push_back(
          LineError{parsed[i].line, "", std::string(tokenized[i].example.status().message())});
      continue;
    }
    Example& e = *tokenized[i].example;
    out.stats.tokens += static_cast<int64_t>(e.input_ids.size() + e.target_ids.size());
    out.stats.truncated_records += tokenized[i].truncated ? 1 : 0;
    out.examples.push_back(std::move(e));
  }
  std::inplace_merge(bad.begin(), bad.begin() + validation_errors, bad.end(),
                     [](const LineError& a, const LineError& b) { return a.line < b.line; });
  out.stats.records = static_cast<int64_t>(out.examples.size());

  const std::string file = options.display_name.empty() ? std::string(name) : options.display_name;
  ValidationResult summary;
  summary.records = out.stats.records;
  summary.bad_lines = static_cast<int64_t>(bad.size());
  summary.errors = std::move(bad);
  if (errors) *errors = summary.errors;
  if (summary.bad_lines > 0 && !options.skip_bad_lines) {
    std::string message = DescribeErrors(file, summary);
    const bool too_long =
        std::any_of(summary.errors.begin(), summary.errors.end(), [](const LineError& e) {
          return e.reason.find(kLongerThanMaxSeqLen) != std::string::npos;
        });
    if (too_long) {
      absl::StrAppend(&message,
                      "; shorten the long records, raise max_seq_len or set truncate: "
                      "true (keeps their first max_seq_len tokens)");
    }
    return absl::InvalidArgumentError(message);
  }
  out.stats.skipped_lines = summary.bad_lines;
  if (out.examples.empty()) {
    return absl::InvalidArgumentError(
        summary.bad_lines > 0
            ? absl::StrCat(DescribeErrors(file, summary, 3), " (no valid records left)")
            : DescribeErrors(file, summary));
  }
  return out;
}

}  // namespace

absl::StatusOr<LoadedDataset> LoadDataset(const std::string& path, const Tokenizer& tokenizer,
                                          const DatasetOptions& options,
                                          std::vector<LineError>* errors) {
  ASSIGN_OR_RETURN(RecordTokenizer record_tokenizer, RecordTokenizer::Create(tokenizer, options));
  std::vector<Parsed> parsed;
  ASSIGN_OR_RETURN(
      ValidationResult validation,
      ValidateRecordFile(path, RecordOptionsFor(options), [&parsed](int64_t line, Record record) {
        parsed.push_back(Parsed{line, std::move(record)});
      }));
  return Assemble(std::move(validation), std::move(parsed),
                  std::filesystem::path(path).filename().string(), record_tokenizer, options,
                  errors);
}

absl::StatusOr<LoadedDataset> LoadDatasetFromBytes(std::string_view jsonl, std::string_view name,
                                                   const Tokenizer& tokenizer,
                                                   const DatasetOptions& options,
                                                   std::vector<LineError>* errors) {
  ASSIGN_OR_RETURN(RecordTokenizer record_tokenizer, RecordTokenizer::Create(tokenizer, options));
  std::vector<Parsed> parsed;
  ValidationResult validation =
      ValidateRecords(jsonl, RecordOptionsFor(options), [&parsed](int64_t line, Record record) {
        parsed.push_back(Parsed{line, std::move(record)});
      });
  return Assemble(std::move(validation), std::move(parsed), name, record_tokenizer, options,
                  errors);
}

}  // namespace peftd::data
