// input_target records (SEQ_2_SEQ_LM) as Examples, the way T5's tokenizer and HF's seq2seq
// preprocessing make them: input_ids = input EOS for the encoder, target_ids = target EOS for the
// decoder to predict (no BOS; the decoder starts from decoder_start_token_id). Truncation cuts the
// text and keeps the EOS, as HF's `truncation=True` does before the template appends it.
// LibTorch-free.
#ifndef PEFTD_WORKER_DATA_SEQ2SEQ_RECORDS_H_
#define PEFTD_WORKER_DATA_SEQ2SEQ_RECORDS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/dataset_records.h"
#include "worker/data/example.h"
#include "worker/data/tokenizer.h"

namespace peftd::data {

// The Example of an input_target record: input_ids at most `max_input` tokens, target_ids at
// most `max_target` tokens, EOS included (when the tokenizer has one). Without `truncate`, a
// longer input or target is INVALID_ARGUMENT naming the field ("input" or "target"), its token
// count and the limit (max_seq_len or max_target_len); `truncated` (if non-null) says whether
// either was cut.
absl::StatusOr<Example> TokenizeInputTarget(const Tokenizer& tokenizer, const Record& record,
                                            int64_t max_input, int64_t max_target, bool truncate,
                                            bool* truncated = nullptr);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_SEQ2SEQ_RECORDS_H_
