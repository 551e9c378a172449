// The tokenizer.json BPE model: vocabulary, ranked merges, byte fallback, unknown token,
// ignore_merges. Encodes one pre-tokenized word at a time; results are cached per word.
#ifndef PEFTD_WORKER_DATA_BPE_MODEL_H_
#define PEFTD_WORKER_DATA_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace peftd::data {

class BpeWordCache;

class BpeModel {
 public:
  // `config` is the "model" object (type BPE).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& config,
                                                            const std::string& path);
  ~BpeModel();

  // Appends the ids of `word`. `byte_level`: `word` is raw bytes, each standing for its GPT-2
  // byte-level character. Thread-safe.
  void Encode(std::string_view word, bool byte_level, std::vector<int64_t>* ids) const;

  std::optional<int64_t> TokenToId(std::string_view token) const;
  // The token of `id`, or nullptr when no token has it.
  const std::string* IdToToken(int64_t id) const;
  // Largest id in the vocabulary (-1 when empty).
  int64_t max_id() const { return static_cast<int64_t>(id_to_token_.size()) - 1; }

 private:
  BpeModel();
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  // The initial symbols of `word` (characters, byte fallback, unknown handling).
  void InitialSymbols(std::string_view word, bool byte_level, std::vector<Symbol>* syms) const;
  // HF's Word::merge_all: merge the lowest-ranked adjacent pair (leftmost first) until none is
  // left.
  void MergeAll(std::vector<Symbol>* syms) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  // (left id << 32 | right id) -> (rank, merged id)
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::array<int32_t, 256> byte_level_ids_{};  // id of each byte's byte-level character, or -1
  std::array<int32_t, 256> fallback_ids_{};    // id of "<0xNN>", or -1
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  std::unique_ptr<BpeWordCache> cache_;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_BPE_MODEL_H_
