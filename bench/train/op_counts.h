// What a stretch of training code executes, counted by LibTorch's own profiler (the same one
// torch.autograd.profiler runs in Python, so bench/train/baseline_pytorch_peft.py --count-ops
// counts its side by the same rules): ATen ops dispatched (nested ones included), autograd nodes
// run by the backward, and CPU allocations. Counts do not depend on the machine's load, so they
// compare per-op overhead where timings cannot.
#ifndef PEFTD_BENCH_TRAIN_OP_COUNTS_H_
#define PEFTD_BENCH_TRAIN_OP_COUNTS_H_

#include <memory>

#include "nlohmann/json.hpp"

namespace peftd::bench {

// Profiles the calling thread (and the intra-op threads it starts) between Start and Stop. One
// counter at a time per process; not thread-safe.
class OpCounter {
 public:
  OpCounter();
  ~OpCounter();
  void Start();
  // {"aten_ops", "autograd_nodes", "allocations", "allocated_bytes", "top_ops", "top_nodes"}:
  // the totals and the most frequent names with their counts. Empty when Start was not called.
  nlohmann::json Stop();
  bool running() const { return running_; }

 private:
  bool running_ = false;
};

}  // namespace peftd::bench

#endif  // PEFTD_BENCH_TRAIN_OP_COUNTS_H_
