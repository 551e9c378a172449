#include "worker/data/seq2seq_records.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace peftd::data {
namespace {

// `text` encoded, cut to leave room for EOS within `limit`, then EOS.
absl::StatusOr<std::vector<int64_t>> EncodeWithEos(const Tokenizer& tokenizer,
                                                   const std::string& text, int64_t limit,
                                                   bool truncate, const char* field,
                                                   const char* limit_name, bool* cut) {
  const int64_t eos = tokenizer.special().eos_id;
  std::vector<int64_t> ids = tokenizer.Encode(text);
  const int64_t n = static_cast<int64_t>(ids.size()) + (eos >= 0 ? 1 : 0);
  if (n > limit) {
    if (!truncate) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is ", n, " tokens, longer than ", limit_name, " ", limit));
    }
    ids.resize(static_cast<size_t>(limit - (eos >= 0 ? 1 : 0)));
    *cut = true;
  }
  if (eos >= 0) ids.push_back(eos);
  return ids;
}

}  // namespace

absl::StatusOr<Example> TokenizeInputTarget(const Tokenizer& tokenizer, const Record& record,
                                            int64_t max_input, int64_t max_target, bool truncate,
                                            bool* truncated) {
  if (record.format != Format::kInputTarget) {
    return absl::InvalidArgumentError(absl::StrCat(
        FormatName(record.format), " records are not input/target pairs (task SEQ_2_SEQ_LM)"));
  }
  if (max_target < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_target_len: ", max_target, " is too small (at least 1)"));
  }
  bool cut = false;
  Example example;
  ASSIGN_OR_RETURN(example.input_ids, EncodeWithEos(tokenizer, record.input, max_input, truncate,
                                                    "input", "max_seq_len", &cut));
  ASSIGN_OR_RETURN(example.target_ids, EncodeWithEos(tokenizer, record.target, max_target, truncate,
                                                     "target", "max_target_len", &cut));
  if (example.target_ids.empty()) {
    return absl::InvalidArgumentError("target: no token to train on (it encodes to nothing)");
  }
  if (truncated) *truncated = cut;
  return example;
}

}  // namespace peftd::data
