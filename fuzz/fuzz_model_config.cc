// Fuzzes the config.json parser (the server lists models with it): any text must give a config or
// a clear error, never a crash or undefined behaviour; an accepted config must give a parameter
// count without overflow and survive ModelConfigJson -> ParseModelConfig with the same shape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/model_config.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = peftd::model::ParseModelConfig(text);
  if (!config.ok()) return 0;
  Check(config->NumParameters() > 0);
  auto again = peftd::model::ParseModelConfig(peftd::model::ModelConfigJson(*config));
  Check(again.ok());
  Check(again->architecture == config->architecture);
  Check(again->vocab_size == config->vocab_size);
  Check(again->hidden_size == config->hidden_size);
  Check(again->intermediate_size == config->intermediate_size);
  Check(again->num_hidden_layers == config->num_hidden_layers);
  Check(again->num_attention_heads == config->num_attention_heads);
  Check(again->num_key_value_heads == config->num_key_value_heads);
  Check(again->head_dim == config->head_dim);
  Check(again->tie_word_embeddings == config->tie_word_embeddings);
  Check(again->attention_bias == config->attention_bias);
  Check(again->llama3_rope.has_value() == config->llama3_rope.has_value());
  return 0;
}
