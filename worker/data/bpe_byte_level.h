// GPT-2's byte-to-unicode table: every byte maps to one printable character ("Ġ" for ' ', the
// byte itself for printable ASCII), so byte-level BPE vocabularies are valid UTF-8 strings.
#ifndef PEFTD_WORKER_DATA_BPE_BYTE_LEVEL_H_
#define PEFTD_WORKER_DATA_BPE_BYTE_LEVEL_H_

#include <cstdint>
#include <string>

namespace peftd::data {

// The character byte `b` stands for, as UTF-8.
const std::string& ByteLevelChar(uint8_t b);
// The byte a byte-level character stands for, or -1 when `c` is not one of the 256.
int ByteLevelByte(char32_t c);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_BPE_BYTE_LEVEL_H_
