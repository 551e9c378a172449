// RoBERTa for sequence classification (RobertaForSequenceClassification) in LibTorch, with
// Hugging Face module names so parameter names equal checkpoint keys and adapter keys match
// PEFT's: roberta.embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm},
// roberta.encoder.layer.N.attention.self.{query,key,value}, ….attention.output.{dense,LayerNorm},
// ….intermediate.dense, ….output.{dense,LayerNorm}, and classifier.{dense,out_proj}.
//
// A post-LN encoder: bidirectional attention over the real tokens, learned absolute positions
// counted from padding_idx + 1 (transformers' create_position_ids_from_input_ids), token type 0
// for every token. The classifier (RobertaClassificationHead: dense, tanh, out_proj on the first
// token, <s>) trains whole; its Linears are plain torch Linears, so no adapter pattern selects
// them (PEFT saves the head through modules_to_save). The base model's dropouts are not applied,
// in training either (as GPT-2 here): the frozen base computes what transformers computes in eval
// mode.
#ifndef PEFTD_WORKER_MODEL_ROBERTA_H_
#define PEFTD_WORKER_MODEL_ROBERTA_H_

#include <torch/torch.h>

#include "adapters/linear.h"
#include "common/model_config.h"
#include "worker/model/fused_projection.h"

namespace peftd::model {

// What every layer's attention needs of the batch's padding (EncoderMask builds it).
struct EncoderMask {
  // (B, T) additive: 0 for real keys, the dtype's lowest for padding; undefined without padding.
  torch::Tensor keys;
  // (B, T) int64 on the CPU: the right padding marked for AttentionCore (MarkRightPadding), its
  // queries and keys skipped; undefined without padding.
  torch::Tensor first_key;
};

// One encoder layer; its submodules are registered under HF's nested names (attention.self.query,
// attention.output.dense, …) through plain container modules. query, key and value run as one
// GEMM (FusedProjection) and the attention as one node (AttentionCore, bidirectional).
class RobertaLayerImpl : public torch::nn::Module {
 public:
  explicit RobertaLayerImpl(const ModelConfig& config);
  // x (B, T, hidden). `first_rows` > 0: only the first that many positions' outputs are computed
  // (B, first_rows, hidden), from every position's keys and values; only when FirstRowsOnly().
  torch::Tensor forward(const torch::Tensor& x, const EncoderMask& mask, int64_t first_rows = 0);

  // Whether the rows after the attention may be dropped: nothing after the attention (output
  // dense, intermediate, output) carries an adapter whose statistics or gate see every token.
  bool FirstRowsOnly() const;

  adapters::Linear query{nullptr}, key{nullptr}, value{nullptr};
  adapters::Linear attention_dense{nullptr}, intermediate_dense{nullptr}, output_dense{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr}, output_norm{nullptr};
  FusedProjection qkv;
  // Off: the ATen attention (AttentionCoreReference) and every position computed (the reference
  // of the tests); the fused projection is switched apart (qkv.set_enabled).
  bool fused_attention = true;

 private:
  int64_t heads_, head_dim_;
  bool tanh_gelu_;
};
TORCH_MODULE(RobertaLayer);

class RobertaImpl : public torch::nn::Module {
 public:
  // `config.sequence_classification` adds the classifier of config.num_labels classes.
  explicit RobertaImpl(const ModelConfig& config);
  // The encoder's last hidden states (B, T, hidden). attention_mask (B, T), 1 = real token
  // (undefined = all real).
  // `first_rows_only`: the last layer computes the first position only (B, 1, hidden), all the
  // classifier reads, when its modules after the attention allow it (FirstRowsOnly).
  torch::Tensor Hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                       bool first_rows_only = false);
  // Class logits (B, num_labels) from the first token's hidden state.
  torch::Tensor Classify(const torch::Tensor& hidden);
  // Classify(Hidden(…, first_rows_only = true)): the last layer's other positions are never read.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // Off: projection by projection, the ATen attention and every position of the last layer (the
  // reference of the tests).
  void SetFusedPaths(bool enabled);

  const ModelConfig& config() const { return config_; }
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr},
      token_type_embeddings{nullptr};
  torch::nn::LayerNorm embeddings_norm{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::Linear classifier_dense{nullptr}, classifier_out_proj{nullptr};  // trainable

 private:
  ModelConfig config_;
};
TORCH_MODULE(Roberta);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_ROBERTA_H_
