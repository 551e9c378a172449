#include "worker/model/tiny_deberta_v2.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/checkpoint_writer.h"
#include "worker/model/deberta_v2.h"
#include "worker/model/tiny_sentencepiece.h"

namespace peftd::model {
namespace {

using nlohmann::json;

absl::Status WriteBinary(const std::string& dir, const std::string& name,
                         const std::string& bytes) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path));
  return absl::OkStatus();
}

}  // namespace

ModelConfig TinyDebertaV2Config() {
  ModelConfig c;
  c.architecture = "DebertaV2ForSequenceClassification";
  c.model_type = "deberta-v2";
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 16;
  c.max_position_embeddings = 128;
  c.type_vocab_size = 0;
  c.layer_norm_epsilon = 1e-7;
  c.activation_function = "gelu";
  c.relative_attention = true;
  c.max_relative_positions = 128;
  c.position_buckets = 8;
  c.norm_rel_ebd_layer_norm = true;
  c.pos_att_c2p = c.pos_att_p2c = true;
  c.position_biased_input = false;
  c.pooler_hidden_act = "gelu";
  c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
  c.sequence_classification = true;
  c.num_labels = 2;
  c.torch_dtype = "float32";
  c.pad_token_id = 0;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

absl::Status WriteTinyDebertaV2Model(const std::string& dir, int shards, const std::string& dtype,
                                     const ModelConfig& tiny) {
  ASSIGN_OR_RETURN(const torch::Dtype type, StoredDtype(dtype));
  RETURN_IF_ERROR(CreateModelFolder(dir));
  ModelConfig config = tiny;
  config.torch_dtype = dtype;
  RETURN_IF_ERROR(WriteModelText(dir, "config.json", ModelConfigJson(config)));
  TinySentencePieceOptions spm;
  spm.controls = {"[PAD]", "[CLS]", "[SEP]"};
  spm.unk = "[UNK]";
  spm.pad = "[PAD]";
  spm.bos = "[CLS]";
  spm.eos = "[SEP]";
  spm.trailing_controls = {"[MASK]"};
  spm.vocab_size = static_cast<int>(config.vocab_size);
  RETURN_IF_ERROR(WriteBinary(dir, "spm.model", TinySentencePieceModel(spm)));
  RETURN_IF_ERROR(WriteModelText(dir, "tokenizer_config.json",
                                 json{{"do_lower_case", false},
                                      {"vocab_type", "spm"},
                                      {"bos_token", "[CLS]"},
                                      {"eos_token", "[SEP]"},
                                      {"cls_token", "[CLS]"},
                                      {"sep_token", "[SEP]"},
                                      {"unk_token", "[UNK]"},
                                      {"pad_token", "[PAD]"},
                                      {"mask_token", "[MASK]"},
                                      {"model_max_length", config.max_position_embeddings},
                                      {"tokenizer_class", "DebertaV2Tokenizer"}}
                                     .dump(2)));
  DebertaV2 model(config);
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9012);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    const bool norm_weight = absl::EndsWith(name, "LayerNorm.weight");
    // Biases and LayerNorms random too, so that a fidelity test sees every parameter; the head
    // larger so that its logits are not all near 0; the relative embeddings larger so that the
    // c2p and p2c terms weigh.
    const bool head = absl::StartsWith(name, "classifier.") || absl::StartsWith(name, "pooler.");
    const double std = head                                        ? 0.5
                       : norm_weight                               ? 0.1
                       : absl::StrContains(name, "rel_embeddings") ? 1.0
                                                                   : 0.05;
    p.copy_(at::normal(norm_weight ? 1.0 : 0.0, std, p.sizes(), gen));
    tensors[name] = p.clone().to(type);
  }
  return WriteCheckpointTensors(dir, tensors, shards);
}

}  // namespace peftd::model
