#include "worker/model/tiny_t5.h"

#include <torch/torch.h>

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/checkpoint_writer.h"
#include "worker/model/t5.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

using nlohmann::json;

// TinyTokenizerJson's specials sit at vocab − 3 .. vocab − 1; T5 uses EOS and pad (no BOS).
constexpr char kEos[] = "<|end_of_text|>";
constexpr char kPad[] = "<|pad|>";

}  // namespace

ModelConfig TinyT5Config(bool v1_0) {
  ModelConfig c;
  c.architecture = "T5ForConditionalGeneration";
  c.model_type = "t5";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.head_dim = 8;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_decoder_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.relative_attention_num_buckets = 8;
  c.relative_attention_max_distance = 20;
  c.layer_norm_epsilon = 1e-6;
  c.gated_feed_forward = !v1_0;
  c.activation_function = v1_0 ? "relu" : "gelu_new";
  c.tie_word_embeddings = v1_0;
  c.max_position_embeddings = 512;
  c.torch_dtype = "float32";
  c.eos_token_id = 510;
  c.pad_token_id = 511;
  c.decoder_start_token_id = 511;
  return c;
}

absl::Status WriteTinyT5Model(const std::string& dir, int shards, const std::string& dtype,
                              bool v1_0) {
  ASSIGN_OR_RETURN(const torch::Dtype type, StoredDtype(dtype));
  RETURN_IF_ERROR(CreateModelFolder(dir));
  ModelConfig config = TinyT5Config(v1_0);
  config.torch_dtype = dtype;
  RETURN_IF_ERROR(WriteModelText(dir, "config.json", ModelConfigJson(config)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer.json", TinyTokenizerJson(config.vocab_size)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer_config.json",
                                 json{{"eos_token", kEos},
                                      {"pad_token", kPad},
                                      {"unk_token", kPad},
                                      {"add_bos_token", false},
                                      {"add_eos_token", true},
                                      {"model_max_length", config.max_position_embeddings},
                                      {"tokenizer_class", "T5TokenizerFast"}}
                                     .dump(2)));
  T5 model(config);
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5678);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    // Norm weights around 1; embeddings N(0, 1) as T5 initialises them; the rest N(0, 0.1),
    // large enough that attention without a scale is far from uniform.
    double mean = 0, std = 0.1;
    if (absl::StrContains(name, "layer_norm")) {
      mean = 1.0;
    } else if (name == "shared.weight" || absl::StrContains(name, "relative_attention_bias")) {
      std = 1.0;
    }
    p.copy_(at::normal(mean, std, p.sizes(), gen));
    tensors[name] = p.clone().to(type);
  }
  return WriteCheckpointTensors(dir, tensors, shards);
}

}  // namespace peftd::model
