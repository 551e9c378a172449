// tokenizer.json "normalizer": the text rewrites applied before pre-tokenization (Sequence,
// Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip). Anything else is refused at load.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_NORMALIZER_H_
#define PEFTD_WORKER_DATA_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace peftd::data {

class SplitRegex;

class Normalizer {
 public:
  // `config` is the "normalizer" value; null or absent = identity.
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const nlohmann::json* config,
                                                              const std::string& path);
  ~Normalizer();

  // Rewrites `text` in place. Thread-safe.
  void Normalize(std::string* text) const;
  bool identity() const { return steps_.empty(); }

  struct Step;

 private:
  Normalizer() = default;
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_NORMALIZER_H_
