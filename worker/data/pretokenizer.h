// tokenizer.json "pre_tokenizer": splits normalized text into the words the BPE model encodes one
// by one (Split with a String or Regex pattern and any HF split behaviour, ByteLevel, Metaspace,
// Digits, Sequence). Anything else is refused at load.
#ifndef PEFTD_WORKER_DATA_PRETOKENIZER_H_
#define PEFTD_WORKER_DATA_PRETOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace peftd::data {

class PreTokenizer {
 public:
  // `config` is the "pre_tokenizer" value; null = the whole text is one word.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json* config,
                                                                const std::string& path);
  ~PreTokenizer();

  // Appends the words of `text` to `out`. `first`: `text` starts the input (Metaspace
  // prepend_scheme "first" adds its ▁ only there). Thread-safe.
  void Split(std::string_view text, bool first, std::vector<std::string>* out) const;

  // True when the last step is ByteLevel: words are then raw bytes, each standing for its GPT-2
  // byte-level character (the mapping is left to the model, which avoids building the strings).
  bool byte_level() const { return byte_level_; }

  struct Step;

 private:
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_PRETOKENIZER_H_
