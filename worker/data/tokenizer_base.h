// What the tokenizer implementations share: the special tokens, set first from the tokenizer file
// itself and then by LoadTokenizer from tokenizer_config.json.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_BASE_H_
#define PEFTD_WORKER_DATA_TOKENIZER_BASE_H_

#include "worker/data/tokenizer.h"

namespace peftd::data {

class TokenizerBase : public Tokenizer {
 public:
  const SpecialTokens& special() const override { return special_; }
  // Only before the tokenizer is shared: loaded tokenizers are immutable.
  SpecialTokens* mutable_special() { return &special_; }

 private:
  SpecialTokens special_;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_BASE_H_
