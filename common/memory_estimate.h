// Peak resident memory of a training job on the worker, from its spec and its model's
// config.json alone (no LibTorch): the server refuses at submit a job that fits no worker, and the
// worker re-checks against its own usable memory before it loads anything.
//
// The model of the worker's run (CPU, fp32; worker/model, worker/train, adapters/):
//  - weights: every base parameter in fp32; while loading, the mapped checkpoint file adds its own
//    bytes (config.json torch_dtype) until the load ends;
//  - adapter: the trainable tensors (method parameters, a SEQ_CLS score head) with their
//    gradients and both AdamW moments (16 bytes per parameter), a construction copy when AdamW
//    moves them into its flat buffers, and AdaLoRA's / AdaDHP's two importance EMAs;
//  - activations: what every decoder layer from the first adapted one up keeps for backward at
//    batch_size x max_seq_len (the worker pads to the longest sequence of a batch, at most
//    max_seq_len): its input and residual, q/k/v after RoPE, the attention probabilities
//    (batch x heads x T x T), the SwiGLU inputs, the inputs adapted projections save and the
//    method's own intermediates; plus the larger of the additive attention mask and one layer's
//    backward temporaries;
//  - logits: the fused causal-LM loss's chunk (<= 128 MiB, >= 256 rows) and the hidden-state
//    gradient it keeps, or the full logits when lm_head itself is adapted;
//  - data: the tokenized datasets, assumed one token per 2 bytes of file at 16 bytes a token
//    (ids and labels), plus the text;
//  - runtime: a fixed allowance for LibTorch, the allocator and the thread pools.
// Calibrated against the peak RSS of real runs (tests/worker_run/memory_estimate_integration_test):
// the estimate stays within a stated factor of what the worker really uses.
#ifndef PEFTD_COMMON_MEMORY_ESTIMATE_H_
#define PEFTD_COMMON_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/job_spec_model.h"
#include "peftd/v1/job.pb.h"

namespace peftd {

// Bytes; each part saturates far below int64's limit, whatever the spec says.
struct MemoryEstimate {
  int64_t weights = 0;
  int64_t loading = 0;  // on top of weights, during the load only
  int64_t adapter = 0;
  int64_t activations = 0;
  int64_t logits = 0;
  int64_t data = 0;
  int64_t runtime = 0;
  int64_t batch_size = 0;  // what activations were computed for
  int64_t max_seq_len = 0;

  // The peak: the larger of the load (weights + loading + data + runtime) and a training step.
  int64_t total() const;
  // "63.2 GiB (weights 25.1, adapter 0.0, activations 37.0 for batch_size 8 x max_seq_len 512,
  // logits 0.1, data 0.0, runtime 0.5 GiB)".
  std::string Summary() const;
};

// The fixed runtime allowance.
inline constexpr int64_t kRuntimeOverheadBytes = int64_t{384} << 20;

// `spec` after WithDefaults and ValidateJobSpec, `resolved` from ResolveSpecOnModel;
// `dataset_bytes`: the training and validation files together.
MemoryEstimate EstimatePeakMemory(const v1::JobSpec& spec, const SpecOnModel& resolved,
                                  int64_t dataset_bytes);

// OK when `estimate` fits `available_bytes`; else RESOURCE_EXHAUSTED naming the estimate, its
// parts, the memory (`available_what`, e.g. "the largest worker (w-1)") and what to lower.
absl::Status CheckMemoryFits(const MemoryEstimate& estimate, int64_t available_bytes,
                             absl::string_view available_what);

// "12.3 GiB".
std::string GiB(int64_t bytes);

}  // namespace peftd

#endif  // PEFTD_COMMON_MEMORY_ESTIMATE_H_
