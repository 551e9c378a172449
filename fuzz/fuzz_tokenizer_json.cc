// Fuzzes the tokenizer.json loader and the encoder/decoder it builds: any bytes must give a
// tokenizer or a clear error, never a crash, a hang, a leak or undefined behaviour. A loaded
// tokenizer encodes a fixed string that exercises every stage, and decodes the ids back.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "worker/data/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto tok = peftd::data::TokenizerFromJson(bytes);
  if (!tok.ok()) return 0;
  static constexpr std::string_view kText =
      "Hello  world!\n\n\t  it's 12345 <s> caf\xC3\xA9 \xF0\x9F\xA6\x99 <|endoftext|>\xFF end ";
  const auto ids = (*tok)->Encode(kText);
  (void)(*tok)->Decode(ids);
  (void)(*tok)->Decode(ids, /*skip_special=*/true);
  (void)(*tok)->Decode({-1, 0, 1, (*tok)->VocabSize(), INT64_MAX});
  for (int64_t id : ids) {
    if (id < 0 || id >= (*tok)->VocabSize()) __builtin_trap();  // every id must be in range
  }
  return 0;
}
