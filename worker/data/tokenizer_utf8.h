// UTF-8 and Unicode-class helpers shared by the tokenizer stages. Invalid UTF-8 never fails here:
// a byte that does not start a valid sequence is read as one "character" of its own (kInvalid), so
// every stage still sees each input byte exactly once and byte fallback can encode it.
#ifndef PEFTD_WORKER_DATA_TOKENIZER_UTF8_H_
#define PEFTD_WORKER_DATA_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace peftd::data {

inline constexpr char32_t kInvalidCodePoint = 0xFFFFFFFF;

// Reads the character at `*pos` and advances `*pos` past it (1 byte for an invalid sequence,
// which returns kInvalidCodePoint).
char32_t NextCodePoint(std::string_view s, size_t* pos);
// Length in bytes of the character that starts at s[pos] (1 for invalid bytes).
size_t CodePointLength(std::string_view s, size_t pos);
void AppendUtf8(char32_t c, std::string* out);
// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s accept).
bool IsUnicodeWhitespace(char32_t c);
// Rust's char::is_alphanumeric() || '_' (HF's "word character" for single_word added tokens).
bool IsWordCharacter(char32_t c);
// `bytes` with every invalid UTF-8 sequence replaced by U+FFFD (Rust's String::from_utf8_lossy).
std::string Utf8Lossy(std::string_view bytes);
// True when `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

}  // namespace peftd::data

#endif  // PEFTD_WORKER_DATA_TOKENIZER_UTF8_H_
