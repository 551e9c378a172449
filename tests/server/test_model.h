// config.json of a small LLaMA-shaped model for tests that need a model folder the server admits
// jobs for (it reads config.json at submit) but no weights: 2 layers, hidden 64, untied head.
#ifndef PEFTD_TESTS_SERVER_TEST_MODEL_H_
#define PEFTD_TESTS_SERVER_TEST_MODEL_H_

namespace peftd::testing {

inline constexpr char kTestModelConfigJson[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
  "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
  "torch_dtype": "float32"
})";

}  // namespace peftd::testing

#endif  // PEFTD_TESTS_SERVER_TEST_MODEL_H_
