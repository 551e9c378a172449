// DeBERTa-v2/v3 for sequence classification (DebertaV2ForSequenceClassification) in LibTorch, with
// Hugging Face module names so parameter names equal checkpoint keys and adapter keys match
// PEFT's: deberta.embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm},
// deberta.encoder.layer.N.attention.self.{query_proj,key_proj,value_proj},
// ….attention.output.{dense,LayerNorm}, ….intermediate.dense, ….output.{dense,LayerNorm},
// deberta.encoder.{rel_embeddings,LayerNorm}, pooler.dense and classifier.
//
// The math of transformers' eager DebertaV2Model (the disentangled attention of
// DisentangledSelfAttention with share_att_key): relative positions i − j log-bucketed
// (make_log_bucket_position), the relative embeddings through the encoder's LayerNorm, and per
// layer the content scores plus the c2p term (query · key_proj(rel)) and the p2c term
// (key · query_proj(rel)) gathered at the clamped relative positions, all scaled by
// 1/sqrt(head_dim·(1 + terms)); XSoftmax over the pairs of real tokens; post-LN blocks as
// BERT's. ContextPooler (dense + pooler_hidden_act on the first token, [CLS]) and the classifier
// head on top. Dropouts are not applied, in training either: the frozen base computes what
// transformers computes in eval mode.
//
// query_proj and key_proj also project the relative embeddings (share_att_key). An adapter on them
// changes those projections as well, as PEFT's LoRA does on every call of the module; under the
// token gate the position rows take the method's un-gated change: they are no tokens of the batch
// (the gate's ratio, threshold statistics and sparsity are about tokens) and are shared by every
// token, so they are neither gated nor counted.
#ifndef PEFTD_WORKER_MODEL_DEBERTA_V2_H_
#define PEFTD_WORKER_MODEL_DEBERTA_V2_H_

#include <torch/torch.h>

#include "adapters/linear.h"
#include "common/model_config.h"
#include "worker/model/fused_projection.h"

namespace peftd::model {

// transformers' build_relative_position with make_log_bucket_position: (q, k) int64 of the
// bucketed i − j (bucket_size <= 0: plain i − j). The logarithm is taken in float32, as the torch
// version of transformers computes it.
torch::Tensor DebertaRelativePositions(int64_t query_size, int64_t key_size, int64_t bucket_size,
                                       int64_t max_position);

// A projection of the relative embeddings by an adapted Linear: its base plus the method's
// change, un-gated (see the file comment); the Linear's norm probe (adapters/norm_probe.h) does
// not observe the rows either, as they are no tokens.
torch::Tensor ProjectPositions(adapters::LinearImpl& linear, const torch::Tensor& rel);

class DebertaV2LayerImpl : public torch::nn::Module {
 public:
  explicit DebertaV2LayerImpl(const ModelConfig& config);
  // x (B, T, hidden); pair_mask (B, 1, T, T) bool, true where both tokens are real; rel_pos (T, T)
  // int64 bucketed relative positions; rel (2·span, hidden) the normalised relative embeddings
  // (undefined without relative_attention). `first_rows` > 0: only the first that many positions'
  // outputs are computed (B, first_rows, hidden), from every position's keys and values; only
  // when FirstRowsOnly().
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pair_mask,
                        const torch::Tensor& rel_pos, const torch::Tensor& rel,
                        int64_t first_rows = 0);
  // Whether nothing after the attention (output dense, intermediate, output) is adapted
  // (Unadapted), so that the rows no one reads may be left out.
  bool FirstRowsOnly() const;

  adapters::Linear query_proj{nullptr}, key_proj{nullptr}, value_proj{nullptr};
  adapters::Linear attention_dense{nullptr}, intermediate_dense{nullptr}, output_dense{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr}, output_norm{nullptr};
  // query_proj, key_proj and value_proj of the tokens as one GEMM (the relative embeddings'
  // projections stay apart: other rows, un-gated).
  FusedProjection qkv;

 private:
  int64_t heads_, head_dim_, span_;
  bool c2p_, p2c_, relative_, tanh_gelu_;
  double scale_;
};
TORCH_MODULE(DebertaV2Layer);

class DebertaV2Impl : public torch::nn::Module {
 public:
  // `config.sequence_classification` adds the pooler and a classifier of config.num_labels.
  explicit DebertaV2Impl(const ModelConfig& config);
  // The encoder's last hidden states (B, T, hidden). attention_mask (B, T), 1 = real token
  // (undefined = all real).
  // `first_rows_only`: the last layer computes the first position only (B, 1, hidden), all the
  // pooler reads, when its modules after the attention allow it (FirstRowsOnly).
  torch::Tensor Hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                       bool first_rows_only = false);
  // Class logits (B, num_labels): ContextPooler on the first token, then the classifier.
  torch::Tensor Classify(const torch::Tensor& hidden);
  // Classify(Hidden(…, first_rows_only = true)): the last layer's other positions are never read.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // Off: projection by projection and every position of the last layer (the reference of the
  // tests).
  void SetFusedPaths(bool enabled);

  const ModelConfig& config() const { return config_; }
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr},
      token_type_embeddings{nullptr}, rel_embeddings{nullptr};
  torch::nn::LayerNorm embeddings_norm{nullptr}, rel_norm{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::Linear pooler_dense{nullptr};  // frozen (PEFT's modules_to_save is the classifier)
  torch::nn::Linear classifier{nullptr};    // trainable

 private:
  ModelConfig config_;
  bool fused_paths_ = true;
};
TORCH_MODULE(DebertaV2);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_DEBERTA_V2_H_
