// The merged model of a job (`export_merged`), for every family: whether the adapter can be folded
// into the base, the biases the merge adds (HUT) and how config.json declares them, and the folder
// written: the trained model's config.json, the tokenizer files and the merged weights under the
// model's own parameter names, which are the HF names of the head class (LLaMA's `model.layers.*`,
// GPT-2's `transformer.h.*`, RoBERTa's `roberta.encoder.*` + `classifier.*`, DeBERTa's
// `deberta.encoder.*` + `pooler.*` + `classifier.*`, T5's `encoder.block.*`); GPT-2's Conv1D
// weights are written back (in, out). DeBERTa's merged query_proj/key_proj also project the
// relative embeddings, as the un-gated adapter does, so the folder is the trained function.
#ifndef PEFTD_WORKER_MERGED_EXPORT_H_
#define PEFTD_WORKER_MERGED_EXPORT_H_

#include <torch/torch.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "adapters/peft_model.h"
#include "common/model_config.h"
#include "peftd/v1/job.pb.h"

namespace peftd::worker {

// Why `peft` cannot become a plain HF checkpoint of the same architecture, or "".
std::string UnmergeableReason(adapters::PeftModel& peft);

// The biases a merged model holds beyond its base's, and how its config.json declares them.
// HUT's merge gives every adapted layer a bias (b = γ⊙b0 + β). HF's Llama declares biases per
// group, for every layer alike: attention_bias for q/k/v/o_proj, mlp_bias for gate/up/down_proj
// (transformers 4.41+). A group that gains a bias anywhere gets the flag, and zero biases
// wherever the base had none, so that the folder loads as the same function. GPT-2's,
// RoBERTa's and DeBERTa's layers all have biases, into which HUT's merge folds; T5 has none and
// no config field to declare them.
struct MergedBiases {
  bool changed = false;  // the merge adds a bias somewhere
  bool attention_bias = false;
  bool mlp_bias = false;
  std::map<std::string, torch::Tensor> zeros;  // "model.layers.0.self_attn.k_proj.bias" -> 0
  std::string why_not;  // non-empty when the base's config.json cannot declare them
};

// `peft` is applied to the model whose config is `trained` (num_labels as trained).
MergedBiases PlanMergedBiases(adapters::PeftModel& peft, const model::ModelConfig& trained);

// The merged model folder written into `tmp`: config.json of the trained model (`trained`:
// architecture and classes), the tokenizer files of `base_dir`, and the merged weights (a
// trained classification head in place of the base's). CANCELLED when `cancelled` is set on the
// way.
absl::Status ExportMerged(adapters::PeftModel& peft, const model::ModelConfig& trained,
                          const MergedBiases& biases, const std::filesystem::path& base_dir,
                          const std::filesystem::path& tmp, const v1::JobSpec& spec,
                          const std::atomic<bool>* cancelled);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_MERGED_EXPORT_H_
