#include "worker/tokenize_command.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/model_config.h"
#include "common/status.h"

namespace peftd::worker {

absl::StatusOr<data::DatasetReport> RunTokenize(const TokenizeCommandOptions& o) {
  absl::StatusOr<std::unique_ptr<data::Tokenizer>> tokenizer = data::LoadTokenizer(o.model_dir);
  if (!tokenizer.ok()) return Annotate(tokenizer.status(), absl::StrCat("--model ", o.model_dir));
  data::DatasetOptions options;
  options.task = o.num_labels > 0 ? data::Task::kSequenceClassification : data::Task::kCausalLm;
  // An encoder-decoder model trains input_target records only (SEQ_2_SEQ_LM).
  absl::StatusOr<model::ModelConfig> config = model::ReadModelConfig(o.model_dir);
  if (config.ok() && config->IsT5()) options.task = data::Task::kSeq2SeqLm;
  options.num_labels = o.num_labels;
  options.max_seq_len = o.max_seq_len;
  options.truncate = o.truncate;
  options.chat_template = o.chat_template;
  ASSIGN_OR_RETURN(data::LoadedDataset dataset,
                   data::LoadDataset(o.data_file, **tokenizer, options));
  return data::InspectDataset(dataset, **tokenizer, options, o.record, o.seed);
}

int RunTokenizeCommand(const TokenizeCommandOptions& o) {
  absl::StatusOr<data::DatasetReport> report = RunTokenize(o);
  if (!report.ok()) {
    std::cerr << "peftd-worker tokenize: " << report.status().message() << "\n";
    return 1;
  }
  if (o.json) {
    std::cout << data::ReportJson(*report).dump(2) << "\n";
  } else {
    std::cout << data::ReportText(*report);
  }
  return 0;
}

}  // namespace peftd::worker
