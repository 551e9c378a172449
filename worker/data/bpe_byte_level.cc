#include "worker/data/bpe_byte_level.h"

#include <array>

#include "worker/data/tokenizer_utf8.h"

namespace peftd::data {
namespace {

// Printable bytes keep their code point; the other 68 take 256, 257, ... in byte order
// (openai/gpt-2 encoder.py bytes_to_unicode).
struct Tables {
  std::array<char32_t, 256> to_char{};
  std::array<std::string, 256> to_utf8;
  std::array<uint8_t, 68> from_extra{};  // byte of character 256 + i
  Tables() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      AppendUtf8(to_char[b], &to_utf8[b]);
      if (!printable) from_extra[to_char[b] - 256] = static_cast<uint8_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

const std::string& ByteLevelChar(uint8_t b) { return GetTables().to_utf8[b]; }

int ByteLevelByte(char32_t c) {
  if (c < 256) {
    const bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
    return printable ? static_cast<int>(c) : -1;
  }
  if (c >= 256 + 68) return -1;
  return GetTables().from_extra[c - 256];
}

}  // namespace peftd::data
