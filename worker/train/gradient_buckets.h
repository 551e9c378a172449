// Data parallelism: the sum of a step's gradients over the ranks, overlapped with the backward
// pass the way PyTorch's DDP reducer does it. The trainable tensors' gradients are views of
// AdamW's flat gradient buffer; the buffer is cut into buckets along the tensors, in the reverse
// of their order in the model (the last layers' gradients are final first). A post-hook on each
// tensor's gradient accumulator (LibTorch 1.13 has no post-accumulate-grad hook; this is what DDP
// uses there) counts the tensors whose gradient is final; once every tensor of a bucket is, the
// bucket's slices go to ProcessGroupGloo::allreduce asynchronously, and the backward pass goes on
// while Gloo's thread sums them. Finish waits for every bucket before clipping and the optimizer.
//
// Buckets start strictly in order (bucket k only after 0..k-1), the same on every rank: Gloo
// pairs the ranks' collectives by their sequence, so a rank that summed its buckets in another
// order would add up different tensors. A bucket whose tensors did not all receive a gradient in
// the backward (a rank's empty share of a short batch) starts in Finish, still in order.
//
// The sum per element is what one allreduce of the whole buffer gives (the same operands; with
// more than two ranks the ring's order of addition may differ). With gradient accumulation only
// the step's last backward overlaps: the earlier ones add into the buffer and are not summed.
#ifndef PEFTD_WORKER_TRAIN_GRADIENT_BUCKETS_H_
#define PEFTD_WORKER_TRAIN_GRADIENT_BUCKETS_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "worker/train/adamw.h"
#include "worker/train/data_parallel.h"

namespace peftd::train {

// The bucket size when none is given: an eighth of the gradient, at least 256 KiB, at most DDP's
// 25 MiB. DDP's 25 MiB alone would make the 0.98 MB of LoRA q,v r=8 on the ~100M model one
// bucket, which can only start after the whole backward pass. Buckets of a few layers start as
// the backward pass moves down the model (there: 4 of about 3.5 layers; Llama-2-7B: 8 of 4), and
// 256 KiB keeps a bucket's fixed cost (2(N-1) network round trips per collective) small next to
// its transfer.
int64_t AutoBucketBytes(int64_t gradient_bytes);

class GradientBuckets {
 public:
  // Cuts `optimizer`'s flat gradient buffer into buckets of about `bucket_bytes` (a bucket closes
  // at the first tensor that takes it to the size or past it; 0: AutoBucketBytes) and hooks the
  // tensors' gradient accumulators. Neither pointer is owned; both must outlive this object.
  // Without a flat buffer (tensors of several dtypes) there are no buckets and Finish sums the
  // gradients in one collective after the backward pass.
  GradientBuckets(DataParallel* dp, AdamW* optimizer, int64_t bucket_bytes = 0);
  // Removes the hooks; waits for buckets still under way.
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Call before the step's last backward pass (exactly one backward pass between Arm and
  // Finish): from then on a bucket starts as soon as its gradients are final. When a tensor that
  // requires a gradient has one outside the flat buffer, nothing is armed and Finish sums the
  // gradients after the backward pass instead.
  void Arm();
  // After that backward pass: starts the buckets not started yet, in order, and waits for all.
  // Without Arm: one sum of every gradient (AdamW::GradientBuffers). The first error, naming the
  // collective, after every bucket was waited for.
  absl::Status Finish();

  int num_buckets() const;
  // Bytes of gradient the buckets sum per step (what each rank contributes to the allreduce).
  int64_t gradient_bytes() const;
  // The bucket size in use (after AutoBucketBytes).
  int64_t bucket_bytes() const;
  // Buckets the hooks started during the last armed backward pass (the rest started in Finish).
  int started_in_backward() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_GRADIENT_BUCKETS_H_
