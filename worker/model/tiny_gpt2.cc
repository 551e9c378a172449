#include "worker/model/tiny_gpt2.h"

#include <torch/torch.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/checkpoint_writer.h"
#include "worker/model/gpt2.h"
#include "worker/model/gpt2_loader.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

using nlohmann::json;

// TinyTokenizerJson's specials sit at vocab − 3 .. vocab − 1; GPT-2 uses one end-of-text token.
constexpr char kEndOfText[] = "<|end_of_text|>";

}  // namespace

ModelConfig TinyGpt2Config() {
  ModelConfig c;
  c.architecture = "GPT2LMHeadModel";
  c.model_type = "gpt2";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 256;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.layer_norm_epsilon = 1e-5;
  c.activation_function = "gelu_new";
  c.tie_word_embeddings = true;
  c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
  c.torch_dtype = "float32";
  c.bos_token_id = 510;
  c.eos_token_id = 510;
  return c;
}

absl::Status WriteTinyGpt2Model(const std::string& dir, int shards, const std::string& dtype) {
  ASSIGN_OR_RETURN(const torch::Dtype type, StoredDtype(dtype));
  RETURN_IF_ERROR(CreateModelFolder(dir));
  ModelConfig config = TinyGpt2Config();
  config.torch_dtype = dtype;
  RETURN_IF_ERROR(WriteModelText(dir, "config.json", ModelConfigJson(config)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer.json", TinyTokenizerJson(config.vocab_size)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer_config.json",
                                 json{{"bos_token", kEndOfText},
                                      {"eos_token", kEndOfText},
                                      {"unk_token", kEndOfText},
                                      {"add_bos_token", false},
                                      {"add_eos_token", false},
                                      {"model_max_length", config.max_position_embeddings},
                                      {"tokenizer_class", "GPT2Tokenizer"}}
                                     .dump(2)));
  Gpt2 model(config);
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4321);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    const bool ln_weight =
        name.find(".ln_") != std::string::npos && name.compare(name.size() - 7, 7, ".weight") == 0;
    p.copy_(at::normal(ln_weight ? 1.0 : 0.0, ln_weight ? 0.1 : 0.02, p.sizes(), gen));
    // transformers saves Conv1D weights (in, out).
    tensors[name] = (IsConv1DWeight(name) ? p.t().contiguous() : p.clone()).to(type);
  }
  return WriteCheckpointTensors(dir, tensors, shards);
}

}  // namespace peftd::model
