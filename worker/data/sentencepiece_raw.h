// libsentencepiece behind an interface of standard-library types, loaded at run time.
//
// Two reasons it is not linked directly:
//  - Debian's sentencepiece_processor.h defines its own absl::string_view, which clashes with
//    Abseil's; the header is included only in sentencepiece_shim.cc, which includes nothing from
//    Abseil or gRPC.
//  - Debian's libsentencepiece.so carries its own copy of protobuf-lite and exports those symbols.
//    In a process that also loads libprotobuf.so (LibTorch, gRPC) the two copies interpose each
//    other and the process crashes before main() (seen: libprotobuf's static init calling
//    sentencepiece's MergeFromImpl). So sentencepiece_shim.cc is built as its own shared library,
//    libpeftd_sentencepiece.so, and dlopen'ed with RTLD_LOCAL | RTLD_DEEPBIND on first use: its
//    symbols stay out of the process's global scope and its own references bind to its own copy.
#ifndef PEFTD_WORKER_DATA_SENTENCEPIECE_RAW_H_
#define PEFTD_WORKER_DATA_SENTENCEPIECE_RAW_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace peftd::data {

class SentencePieceRaw {
 public:
  // Loads a serialized SentencePiece model (tokenizer.model); nullptr and `*error` on failure
  // (also when libpeftd_sentencepiece.so cannot be found: set PEFTD_SENTENCEPIECE_SHIM to it).
  static std::unique_ptr<SentencePieceRaw> Load(const std::string& path, std::string* error);
  virtual ~SentencePieceRaw() = default;

  // Thread-safe, as libsentencepiece's encode and decode are.
  virtual std::vector<int> Encode(std::string_view text) const = 0;
  virtual std::string Decode(const std::vector<int>& ids) const = 0;
  virtual int size() const = 0;
  // -1 when `piece` is not in the vocabulary.
  virtual int PieceToId(std::string_view piece) const = 0;
  virtual std::string IdToPiece(int id) const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
  virtual int bos_id() const = 0;  // -1 when the model has none
  virtual int eos_id() const = 0;
  virtual int pad_id() const = 0;
};

// The one symbol libpeftd_sentencepiece.so exports: a new model, or nullptr and `*error`.
extern "C" SentencePieceRaw* PeftdSentencePieceCreate(const char* path, std::string* error);
using SentencePieceCreateFn = SentencePieceRaw* (*)(const char* path, std::string* error);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_SENTENCEPIECE_RAW_H_
