// Fuzzes the safetensors header parser and file validation: any bytes must give a value or a
// clear error, never a crash, a hang or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto file = peftd::safetensors::File::FromBytes(bytes);
  if (file.ok()) {
    for (const auto& name : file->names()) {
      auto view = file->Get(name);
      if (view.ok() && view->size_bytes > 0) {
        volatile uint8_t sink = view->data[view->size_bytes - 1];  // must be inside the buffer
        (void)sink;
      }
    }
  }
  // The header parser alone, with the first 8 bytes read as the data size.
  if (size >= 8) {
    uint64_t data_size = 0;
    for (int i = 7; i >= 0; --i) data_size = (data_size << 8) | data[i];
    (void)peftd::safetensors::ParseHeader(absl::string_view(bytes).substr(8), data_size);
  }
  return 0;
}
