// tokenizer.json "decoder": turns token strings back into text (ByteLevel, Metaspace, Replace,
// ByteFallback, Fuse, Strip, Sequence). Anything else is refused at load.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_DECODER_H_
#define PEFTD_WORKER_DATA_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace peftd::data {

class Decoder {
 public:
  // `config` is the "decoder" value; null = tokens joined with spaces (HF's behaviour).
  static absl::StatusOr<std::unique_ptr<Decoder>> FromJson(const nlohmann::json* config,
                                                           const std::string& path);
  ~Decoder();

  // The text of `tokens` (valid UTF-8: undecodable bytes become U+FFFD, as in HF).
  std::string Decode(std::vector<std::string> tokens) const;

  struct Step;

 private:
  Decoder() = default;
  std::vector<std::unique_ptr<Step>> steps_;
  bool none_ = true;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_DECODER_H_
