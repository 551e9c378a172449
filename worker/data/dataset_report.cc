#include "worker/data/dataset_report.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "worker/data/packing.h"

namespace peftd::data {

DatasetReport InspectDataset(const LoadedDataset& dataset, const Tokenizer& tokenizer,
                             const DatasetOptions& options, int64_t sample_index, uint64_t seed) {
  DatasetReport r;
  r.format = dataset.format;
  r.records = dataset.stats.records;
  r.tokens = dataset.stats.tokens;
  r.truncated_records = dataset.stats.truncated_records;
  r.skipped_lines = dataset.stats.skipped_lines;
  r.max_seq_len = options.max_seq_len;
  const bool causal = options.task == Task::kCausalLm;
  for (const Example& e : dataset.examples) {
    const int64_t n = static_cast<int64_t>(e.input_ids.size());
    r.longest_record = std::max(r.longest_record, n);
    if (options.task == Task::kSeq2SeqLm) {
      r.loss_tokens += static_cast<int64_t>(e.target_ids.size());  // every target id is predicted
      continue;
    }
    if (!causal) {
      ++r.loss_tokens;  // one prediction per sequence
      continue;
    }
    if (e.labels.empty()) {
      r.loss_tokens += std::max<int64_t>(n - 1, 0);
      continue;
    }
    for (size_t j = 1; j < e.labels.size(); ++j) r.loss_tokens += e.labels[j] != -100 ? 1 : 0;
  }
  if (causal && !dataset.examples.empty()) {
    PackingStats packed;
    PackExamples(dataset.examples, options.max_seq_len, seed, &packed);
    r.packed_rows = packed.rows;
    r.packing_efficiency = packed.Efficiency();
  }
  if (!dataset.examples.empty()) {
    r.sample_index =
        std::clamp<int64_t>(sample_index, 0, static_cast<int64_t>(dataset.examples.size()) - 1);
    const Example& e = dataset.examples[r.sample_index];
    for (size_t j = 0; j < e.input_ids.size(); ++j) {
      DatasetReport::Token t;
      t.id = e.input_ids[j];
      t.text = tokenizer.Decode({t.id});
      t.loss = causal && j > 0 && (e.labels.empty() || e.labels[j] != -100);
      r.sample.push_back(std::move(t));
    }
    // Seq2seq: the target follows the input in the sample, every one of its tokens trained.
    for (int64_t id : e.target_ids) r.sample.push_back({id, tokenizer.Decode({id}), true});
  }
  return r;
}

nlohmann::json ReportJson(const DatasetReport& r) {
  nlohmann::json tokens = nlohmann::json::array();
  for (const DatasetReport::Token& t : r.sample) {
    tokens.push_back({{"id", t.id}, {"text", t.text}, {"loss", t.loss}});
  }
  return {{"format", r.format},
          {"records", r.records},
          {"tokens", r.tokens},
          {"loss_tokens", r.loss_tokens},
          {"truncated_records", r.truncated_records},
          {"skipped_lines", r.skipped_lines},
          {"max_seq_len", r.max_seq_len},
          {"longest_record", r.longest_record},
          {"packed_rows", r.packed_rows},
          {"packing_efficiency", r.packing_efficiency},
          {"sample", {{"index", r.sample_index}, {"tokens", tokens}}}};
}

std::string ReportText(const DatasetReport& r) {
  std::string out;
  const double share = r.tokens > 0 ? 100.0 * r.loss_tokens / r.tokens : 0;
  out += absl::StrFormat("format              %s\n", r.format);
  out += absl::StrFormat("records             %d\n", r.records);
  out += absl::StrFormat("tokens              %d (longest record %d, max_seq_len %d)\n", r.tokens,
                         r.longest_record, r.max_seq_len);
  out += absl::StrFormat("tokens with loss    %d (%.1f%% of the tokens)\n", r.loss_tokens, share);
  out += absl::StrFormat("truncated records   %d\n", r.truncated_records);
  if (r.skipped_lines > 0) out += absl::StrFormat("skipped lines       %d\n", r.skipped_lines);
  if (r.packed_rows > 0) {
    out +=
        absl::StrFormat("packing             %d rows of %d, %.1f%% of their positions are tokens\n",
                        r.packed_rows, r.max_seq_len, 100 * r.packing_efficiency);
  }
  out += absl::StrFormat("record %d (%d tokens; loss on the tokens between ⟦ and ⟧):\n",
                         r.sample_index, r.sample.size());
  bool in_loss = false;
  for (const DatasetReport::Token& t : r.sample) {
    if (t.loss != in_loss) out += t.loss ? "⟦" : "⟧";
    in_loss = t.loss;
    out += t.text;
  }
  if (in_loss) out += "⟧";
  out += "\n";
  return out;
}

}  // namespace peftd::data
