#include "worker/model/tiny_sentencepiece.h"

#include <cstdint>
#include <cstring>

namespace peftd::model {
namespace {

// Protocol-buffer wire format, the few pieces a ModelProto needs.
void Varint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void Tag(int field, int wire_type, std::string* out) {
  Varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type), out);
}
void Bytes(int field, const std::string& bytes, std::string* out) {
  Tag(field, 2, out);
  Varint(bytes.size(), out);
  out->append(bytes);
}
void Int(int field, int64_t v, std::string* out) {
  Tag(field, 0, out);
  Varint(static_cast<uint64_t>(v), out);
}
void Float(int field, float v, std::string* out) {
  Tag(field, 5, out);
  char b[4];
  std::memcpy(b, &v, 4);  // little-endian hosts only, as the rest of the project
  out->append(b, 4);
}

// SentencePiece.Type.
constexpr int kNormal = 1, kUnknown = 2, kControl = 3;

std::string Piece(const std::string& text, float score, int type) {
  std::string p;
  Bytes(1, text, &p);   // piece
  Float(2, score, &p);  // score
  Int(3, type, &p);     // type
  return p;
}

}  // namespace

std::string TinySentencePieceModel(const TinySentencePieceOptions& o) {
  const std::string space = "\xe2\x96\x81";  // ▁
  std::vector<std::pair<std::string, int>> pieces;
  for (const std::string& c : o.controls) pieces.push_back({c, kControl});
  const int unk_id = static_cast<int>(pieces.size());
  pieces.push_back({o.unk, kUnknown});
  std::vector<std::string> normal = {space};
  for (char ch = 33; ch < 127; ++ch) normal.push_back(std::string(1, ch));
  for (char ch = 'a'; ch <= 'z'; ++ch) normal.push_back(space + ch);
  for (char ch = 'A'; ch <= 'Z'; ++ch) normal.push_back(space + ch);
  const int room = o.vocab_size - static_cast<int>(pieces.size() + o.trailing_controls.size());
  for (char a = 'a'; a <= 'z' && static_cast<int>(normal.size()) < room; ++a) {
    for (char b = 'a'; b <= 'z' && static_cast<int>(normal.size()) < room; ++b) {
      normal.push_back(std::string(1, a) + b);
    }
  }
  if (static_cast<int>(normal.size()) > room) normal.resize(room > 0 ? room : 0);
  for (const std::string& n : normal) pieces.push_back({n, kNormal});
  for (const std::string& c : o.trailing_controls) pieces.push_back({c, kControl});

  auto id_of = [&](const std::string& piece) -> int64_t {
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (pieces[i].first == piece) return static_cast<int64_t>(i);
    }
    return -1;
  };
  std::string model;
  for (size_t i = 0; i < pieces.size(); ++i) {
    // Longer pieces score higher, so that Viterbi prefers them; ties broken by id.
    const auto& [text, type] = pieces[i];
    const float score =
        type == kNormal ? -10.0f + static_cast<float>(text.size()) - static_cast<float>(i) * 1e-4f
                        : 0.0f;
    Bytes(1, Piece(text, score, type), &model);
  }
  std::string trainer;
  Int(3, 1, &trainer);  // model_type UNIGRAM
  Int(4, static_cast<int64_t>(pieces.size()), &trainer);
  Int(35, 0, &trainer);  // byte_fallback false
  Int(40, unk_id, &trainer);
  Int(41, id_of(o.bos), &trainer);
  Int(42, id_of(o.eos), &trainer);
  Int(43, id_of(o.pad), &trainer);
  Bytes(45, o.unk, &trainer);
  Bytes(46, o.bos, &trainer);
  Bytes(47, o.eos, &trainer);
  Bytes(48, o.pad, &trainer);
  Bytes(2, trainer, &model);
  std::string normalizer;
  Bytes(1, "identity", &normalizer);
  Int(3, 1, &normalizer);  // add_dummy_prefix
  Int(4, 1, &normalizer);  // remove_extra_whitespaces
  Int(5, 1, &normalizer);  // escape_whitespaces
  Bytes(3, normalizer, &model);
  return model;
}

}  // namespace peftd::model
