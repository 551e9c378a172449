// The one file that includes sentencepiece_processor.h: nothing from Abseil or gRPC here, directly
// or through our headers (see sentencepiece_raw.h).
#include "worker/data/sentencepiece_raw.h"

#include <sentencepiece_processor.h>

namespace peftd::data {

struct SentencePieceRaw::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SentencePieceRaw::SentencePieceRaw() : impl_(std::make_unique<Impl>()) {}
SentencePieceRaw::~SentencePieceRaw() = default;

std::unique_ptr<SentencePieceRaw> SentencePieceRaw::Load(const std::string& path,
                                                         std::string* error) {
  std::unique_ptr<SentencePieceRaw> raw(new SentencePieceRaw());
  const auto status = raw->impl_->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return raw;
}

std::vector<int> SentencePieceRaw::Encode(std::string_view text) const {
  std::vector<int> ids;
  impl_->sp.Encode(text, &ids).IgnoreError();
  return ids;
}

std::string SentencePieceRaw::Decode(const std::vector<int>& ids) const {
  std::string text;
  impl_->sp.Decode(ids, &text).IgnoreError();
  return text;
}

int SentencePieceRaw::size() const { return impl_->sp.GetPieceSize(); }

int SentencePieceRaw::PieceToId(std::string_view piece) const {
  const int id = impl_->sp.PieceToId(piece);
  if (id < 0 || id >= size() || impl_->sp.IdToPiece(id) != piece) return -1;
  return id;
}

std::string SentencePieceRaw::IdToPiece(int id) const {
  if (id < 0 || id >= size()) return "";
  return impl_->sp.IdToPiece(id);
}

bool SentencePieceRaw::IsControl(int id) const {
  return id >= 0 && id < size() && impl_->sp.IsControl(id);
}

bool SentencePieceRaw::IsUnknown(int id) const {
  return id >= 0 && id < size() && impl_->sp.IsUnknown(id);
}

int SentencePieceRaw::bos_id() const { return impl_->sp.bos_id(); }
int SentencePieceRaw::eos_id() const { return impl_->sp.eos_id(); }
int SentencePieceRaw::pad_id() const { return impl_->sp.pad_id(); }

}  // namespace peftd::data
