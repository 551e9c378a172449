// Per-thread scratch memory for the fused CPU nodes' temporaries (x ⊙ l, dh ⊙ r, DoRA's merged
// weight, ...): each is dead when its forward or backward returns, and on a small model an
// allocation costs as much as the loop that fills it. A node's forward and backward never run
// inside another node's, so the slots are free again when the next node starts; `slot` keeps the
// buffers of one call apart.
#ifndef PEFTD_ADAPTERS_SCRATCH_H_
#define PEFTD_ADAPTERS_SCRATCH_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace peftd::adapters {

inline constexpr int kScratchSlots = 3;

// `count` elements of T at slot `slot` (0 .. kScratchSlots - 1), uninitialized as far as the
// caller knows; valid until the next call with the same slot on this thread.
template <typename T>
T* Scratch(int slot, int64_t count) {
  thread_local std::vector<double> buffers[kScratchSlots];
  std::vector<double>& b = buffers[slot];
  const size_t need =
      (static_cast<size_t>(count) * sizeof(T) + sizeof(double) - 1) / sizeof(double);
  if (b.size() < need) b.resize(need);
  return reinterpret_cast<T*>(b.data());
}

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_SCRATCH_H_
