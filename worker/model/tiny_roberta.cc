#include "worker/model/tiny_roberta.h"

#include <torch/torch.h>

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/checkpoint_writer.h"
#include "worker/model/roberta.h"
#include "worker/model/tiny_model.h"

namespace peftd::model {
namespace {

using nlohmann::json;

// RoBERTa's specials, at the ids roberta-base gives them.
constexpr const char* kSpecials[3] = {"<s>", "<pad>", "</s>"};

}  // namespace

ModelConfig TinyRobertaConfig() {
  ModelConfig c;
  c.architecture = "RobertaForSequenceClassification";
  c.model_type = "roberta";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 16;
  c.max_position_embeddings = 130;
  c.type_vocab_size = 1;
  c.layer_norm_epsilon = 1e-5;
  c.activation_function = "gelu";
  c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
  c.sequence_classification = true;
  c.num_labels = 2;
  c.torch_dtype = "float32";
  c.bos_token_id = 0;
  c.pad_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

std::string TinyRobertaTokenizerJson(int64_t vocab_size) {
  json tok = json::parse(TinyTokenizerJson(vocab_size));
  // The base tokenizer puts its 3 specials last; RoBERTa's come first: shift the rest up.
  const int64_t limit = vocab_size - 3;
  json vocab = json::object();
  for (const auto& [token, id] : tok["model"]["vocab"].items()) {
    if (id.get<int64_t>() < limit) vocab[token] = id.get<int64_t>() + 3;
  }
  json added = json::array();
  for (int i = 0; i < 3; ++i) {
    vocab[kSpecials[i]] = i;
    added.push_back({{"id", i},
                     {"content", kSpecials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", true},
                     {"special", true}});
  }
  tok["model"]["vocab"] = vocab;
  tok["added_tokens"] = added;
  tok["post_processor"] = {{"type", "RobertaProcessing"},
                           {"sep", {kSpecials[2], 2}},
                           {"cls", {kSpecials[0], 0}},
                           {"trim_offsets", true},
                           {"add_prefix_space", false}};
  return tok.dump(1);
}

absl::Status WriteTinyRobertaModel(const std::string& dir, int shards, const std::string& dtype) {
  ASSIGN_OR_RETURN(const torch::Dtype type, StoredDtype(dtype));
  RETURN_IF_ERROR(CreateModelFolder(dir));
  ModelConfig config = TinyRobertaConfig();
  config.torch_dtype = dtype;
  RETURN_IF_ERROR(WriteModelText(dir, "config.json", ModelConfigJson(config)));
  RETURN_IF_ERROR(
      WriteModelText(dir, "tokenizer.json", TinyRobertaTokenizerJson(config.vocab_size)));
  RETURN_IF_ERROR(WriteModelText(
      dir, "tokenizer_config.json",
      json{{"bos_token", kSpecials[0]},
           {"eos_token", kSpecials[2]},
           {"sep_token", kSpecials[2]},
           {"cls_token", kSpecials[0]},
           {"pad_token", kSpecials[1]},
           {"model_max_length", config.max_position_embeddings - config.pad_token_id - 1},
           {"tokenizer_class", "RobertaTokenizer"}}
          .dump(2)));
  Roberta model(config);
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5678);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    const bool norm_weight = absl::EndsWith(name, "LayerNorm.weight");
    // Biases and LayerNorms random too, so that a fidelity test sees every parameter; the
    // classifier larger so that its logits are not all near 0.
    const double std = absl::StartsWith(name, "classifier.") ? 0.5 : (norm_weight ? 0.1 : 0.05);
    p.copy_(at::normal(norm_weight ? 1.0 : 0.0, std, p.sizes(), gen));
    tensors[name] = p.clone().to(type);
  }
  return WriteCheckpointTensors(dir, tensors, shards);
}

}  // namespace peftd::model
