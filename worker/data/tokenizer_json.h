// The Hugging Face tokenizer.json tokenizer: added tokens, normalizer, pre-tokenizer, BPE model,
// decoder, in HF's order. Model types other than BPE and unsupported components are refused with
// the JSON path of the field.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_JSON_H_
#define PEFTD_WORKER_DATA_TOKENIZER_JSON_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/data/tokenizer_base.h"

namespace peftd::data {

// Parses the text of a tokenizer.json. special() starts from the post_processor: a
// TemplateProcessing whose single template begins (ends) with a special token sets bos_id and
// add_bos (eos_id and add_eos).
absl::StatusOr<std::unique_ptr<TokenizerBase>> TokenizerFromJson(std::string_view json_text);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_JSON_H_
