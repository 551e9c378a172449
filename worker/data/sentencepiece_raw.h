// A thin wrapper of libsentencepiece's processor with only standard-library types in its
// interface. Debian's sentencepiece_processor.h defines its own absl::string_view, which clashes
// with Abseil's, so that header is included in sentencepiece_raw.cc alone and that file includes
// nothing from Abseil or gRPC. Everything else uses this header.
#ifndef PEFTD_WORKER_DATA_SENTENCEPIECE_RAW_H_
#define PEFTD_WORKER_DATA_SENTENCEPIECE_RAW_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace peftd::data {

class SentencePieceRaw {
 public:
  // Loads a serialized SentencePiece model (tokenizer.model); nullptr and `*error` on failure.
  static std::unique_ptr<SentencePieceRaw> Load(const std::string& path, std::string* error);
  ~SentencePieceRaw();

  // Thread-safe, as libsentencepiece's encode and decode are.
  std::vector<int> Encode(std::string_view text) const;
  std::string Decode(const std::vector<int>& ids) const;
  int size() const;
  // -1 when `piece` is not in the vocabulary.
  int PieceToId(std::string_view piece) const;
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  int pad_id() const;

 private:
  SentencePieceRaw();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_SENTENCEPIECE_RAW_H_
