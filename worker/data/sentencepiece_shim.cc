// libpeftd_sentencepiece.so: the one file that includes sentencepiece_processor.h. Nothing from
// Abseil or gRPC here, directly or through our headers; built as its own shared library and
// dlopen'ed (see sentencepiece_raw.h for why).
#include <sentencepiece_processor.h>

#include "worker/data/sentencepiece_raw.h"

namespace peftd::data {
namespace {

class SentencePieceShim : public SentencePieceRaw {
 public:
  sentencepiece::SentencePieceProcessor sp;

  std::vector<int> Encode(std::string_view text) const override {
    std::vector<int> ids;
    sp.Encode(text, &ids).IgnoreError();
    return ids;
  }
  std::string Decode(const std::vector<int>& ids) const override {
    std::string text;
    sp.Decode(ids, &text).IgnoreError();
    return text;
  }
  int size() const override { return sp.GetPieceSize(); }
  int PieceToId(std::string_view piece) const override {
    const int id = sp.PieceToId(piece);
    if (id < 0 || id >= size() || sp.IdToPiece(id) != piece) return -1;
    return id;
  }
  std::string IdToPiece(int id) const override {
    if (id < 0 || id >= size()) return "";
    return sp.IdToPiece(id);
  }
  bool IsControl(int id) const override { return id >= 0 && id < size() && sp.IsControl(id); }
  bool IsUnknown(int id) const override { return id >= 0 && id < size() && sp.IsUnknown(id); }
  int bos_id() const override { return sp.bos_id(); }
  int eos_id() const override { return sp.eos_id(); }
  int pad_id() const override { return sp.pad_id(); }
};

}  // namespace

extern "C" __attribute__((visibility("default"))) SentencePieceRaw* PeftdSentencePieceCreate(
    const char* path, std::string* error) {
  auto* shim = new SentencePieceShim();
  const auto status = shim->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    delete shim;
    return nullptr;
  }
  return shim;
}

}  // namespace peftd::data
