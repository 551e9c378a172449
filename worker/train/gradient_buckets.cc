#include "worker/train/gradient_buckets.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace peftd::train {

int64_t AutoBucketBytes(int64_t gradient_bytes) {
  constexpr int64_t kMin = int64_t{256} << 10, kMax = int64_t{25} << 20;
  return std::clamp<int64_t>(gradient_bytes / 8, kMin, kMax);
}

struct GradientBuckets::State {
  struct Bucket {
    std::vector<size_t> tensors;
    // (offset, numel) in the flat buffer: one slice per AdamW region (decayed tensors first),
    // as a bucket's tensors are consecutive in the model and so in each region.
    std::vector<std::pair<int64_t, int64_t>> slices;
    int expected = 0;  // tensors that require a gradient, counted at Arm
    int ready = 0;
  };

  DataParallel* dp = nullptr;
  AdamW* optimizer = nullptr;
  std::vector<Bucket> buckets;
  std::vector<int> bucket_of;  // tensor -> bucket
  std::vector<bool> seen;      // the tensor's gradient became final in the armed pass
  std::vector<DataParallel::PendingSum> pending;  // started collectives, in order
  size_t next = 0;                                // the next bucket to start
  bool armed = false;
  int started_in_backward = 0;
  int64_t bucket_bytes = 0;
  int64_t gradient_bytes = 0;
  // Hooked accumulators, and the keys that remove the hooks.
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks;
  std::mutex mu;

  void Start(size_t b) {
    const Bucket& bucket = buckets[b];
    if (bucket.expected == 0) return;  // every tensor pruned on every rank: nothing to sum
    for (const auto& [offset, numel] : bucket.slices) {
      pending.push_back(
          dp->StartSum(optimizer->flat_grad().narrow(0, offset, numel),
                       absl::StrCat("gradients (bucket ", b + 1, " of ", buckets.size(), ")")));
    }
  }

  // Starts the buckets that are ready, in order, up to the first that is not.
  void StartReady(bool in_backward) {
    while (next < buckets.size() && buckets[next].ready >= buckets[next].expected) {
      Start(next++);
      if (in_backward) ++started_in_backward;
    }
  }

  void Ready(size_t tensor) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || seen[tensor]) return;
    seen[tensor] = true;
    ++buckets[bucket_of[tensor]].ready;
    StartReady(/*in_backward=*/true);
  }

  // Runs after a tensor's AccumulateGrad: its gradient in the flat buffer is final for this
  // backward pass (the engine runs a node once, after every gradient flowing into it).
  class ReadyHook final : public torch::autograd::FunctionPostHook {
   public:
    ReadyHook(std::shared_ptr<State> state, size_t tensor)
        : state_(std::move(state)), tensor_(tensor) {}
    torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                              const torch::autograd::variable_list&) override {
      state_->Ready(tensor_);
      return outputs;
    }

   private:
    std::shared_ptr<State> state_;
    size_t tensor_;
  };
};

GradientBuckets::GradientBuckets(DataParallel* dp, AdamW* optimizer, int64_t bucket_bytes)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.dp = dp;
  s.optimizer = optimizer;
  const torch::Tensor& flat = optimizer->flat_grad();
  if (!flat.defined()) return;
  const auto& params = optimizer->params();
  const int64_t elem = flat.element_size();
  s.gradient_bytes = flat.numel() * elem;
  s.bucket_bytes = bucket_bytes > 0 ? bucket_bytes : AutoBucketBytes(s.gradient_bytes);
  s.bucket_of.assign(params.size(), -1);
  s.seen.assign(params.size(), false);

  State::Bucket bucket;
  int64_t bytes = 0;
  // Per region (decayed, not decayed): the bucket's span and how much of it its tensors cover.
  int64_t lo[2], hi[2], covered[2];
  auto reset = [&] {
    bucket = State::Bucket();
    bytes = 0;
    for (int r = 0; r < 2; ++r) {
      lo[r] = std::numeric_limits<int64_t>::max();
      hi[r] = covered[r] = 0;
    }
  };
  auto close = [&] {
    bool contiguous = true;
    for (int r = 0; r < 2; ++r)
      contiguous = contiguous && (covered[r] == 0 || hi[r] - lo[r] == covered[r]);
    for (int r = 0; r < 2; ++r) {
      if (covered[r] > 0 && contiguous) bucket.slices.emplace_back(lo[r], hi[r] - lo[r]);
    }
    if (!contiguous) {  // not AdamW's layout after all: a slice per tensor is still right
      for (size_t i : bucket.tensors) {
        const int64_t n = params[i].tensor.numel();
        if (n > 0) bucket.slices.emplace_back(optimizer->flat_offset(i), n);
      }
    }
    for (size_t i : bucket.tensors) s.bucket_of[i] = static_cast<int>(s.buckets.size());
    s.buckets.push_back(std::move(bucket));
    reset();
  };
  reset();
  for (size_t k = params.size(); k-- > 0;) {
    const int64_t n = params[k].tensor.numel();
    const int r = params[k].decay ? 0 : 1;
    bucket.tensors.push_back(k);
    if (n > 0) {
      const int64_t offset = optimizer->flat_offset(k);
      lo[r] = std::min(lo[r], offset);
      hi[r] = std::max(hi[r], offset + n);
      covered[r] += n;
    }
    bytes += n * elem;
    if (bytes >= s.bucket_bytes) close();
  }
  if (!bucket.tensors.empty()) close();

  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& t = params[i].tensor;
    if (!t.requires_grad()) continue;
    std::shared_ptr<torch::autograd::Node> accumulator = torch::autograd::impl::grad_accumulator(t);
    if (!accumulator) continue;
    const uintptr_t key = accumulator->add_post_hook(std::make_unique<State::ReadyHook>(state_, i));
    s.hooks.emplace_back(std::move(accumulator), key);
  }
}

GradientBuckets::~GradientBuckets() {
  std::vector<DataParallel::PendingSum> pending;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->armed = false;
    pending = std::move(state_->pending);
    // The accumulators (held here, so the hooks stay on the nodes the backward passes use) drop
    // the hooks, and with them their references to the state.
    for (auto& [node, key] : state_->hooks) node->del_post_hook(key);
    state_->hooks.clear();
  }
  pending.clear();  // each waits for its collective
}

void GradientBuckets::Arm() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  s.armed = false;
  s.started_in_backward = 0;
  if (s.buckets.empty() || !s.optimizer->LiveGradientsInFlatBuffer()) return;
  const auto& params = s.optimizer->params();
  for (auto& bucket : s.buckets) {
    bucket.ready = bucket.expected = 0;
    for (size_t i : bucket.tensors) bucket.expected += params[i].tensor.requires_grad() ? 1 : 0;
  }
  std::fill(s.seen.begin(), s.seen.end(), false);
  s.pending.clear();
  s.next = 0;
  s.armed = true;
  s.StartReady(/*in_backward=*/false);  // leading buckets whose tensors were all pruned
}

absl::Status GradientBuckets::Finish() {
  State& s = *state_;
  std::vector<DataParallel::PendingSum> pending;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.armed) return s.dp->Sum(s.optimizer->GradientBuffers(), "gradients");
    s.armed = false;
    while (s.next < s.buckets.size()) s.Start(s.next++);
    pending = std::move(s.pending);
    s.pending.clear();
  }
  absl::Status status;
  for (auto& p : pending) status.Update(s.dp->Wait(std::move(p)));
  return status;
}

int GradientBuckets::num_buckets() const { return static_cast<int>(state_->buckets.size()); }
int64_t GradientBuckets::gradient_bytes() const { return state_->gradient_bytes; }
int64_t GradientBuckets::bucket_bytes() const { return state_->bucket_bytes; }
int GradientBuckets::started_in_backward() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->started_in_backward;
}

}  // namespace peftd::train
