#include "adapters/small_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "adapters/blas_kernel.h"
#include "adapters/block_gemm.h"

namespace peftd::adapters {
namespace {

// Inner-dimension block: the rows of B one pass of the tiles walks (256 × n floats stay in L2
// for every n of a small product), so a long inner dimension (a weight gradient over thousands of
// tokens) does not stream B from memory once per row tile.
constexpr int64_t kInnerBlock = 256;

// B (n × k, row stride ldb) transposed into `out` (k rows of PackedStride(n)), 16 rows of B at a
// time so that both the reads and the writes stay within a few cache lines per step.
template <typename T>
const T* PackTransposed(const T* b, int64_t ldb, int64_t n, int64_t k, int64_t ld,
                        std::vector<T>& out) {
  out.resize(static_cast<size_t>(ld * std::max<int64_t>(k, 1)));
  constexpr int64_t kRows = 16;
  for (int64_t j0 = 0; j0 < n; j0 += kRows) {
    const int64_t j1 = std::min(n, j0 + kRows);
    for (int64_t kk = 0; kk < k; ++kk) {
      T* row = out.data() + kk * ld;
      for (int64_t j = j0; j < j1; ++j) row[j] = b[j * ldb + kk];
    }
  }
  return out.data();
}

// The row stride of a packed Bᵀ: n rounded up to 16, off any multiple of 128 elements. The tiles
// walk B down a column panel, and rows 512 B apart or more by a power of two map to a handful of
// L1 sets: with n = 512 (the tiny model's vocabulary) the kernels ran at half speed.
int64_t PackedStride(int64_t n) {
  const int64_t ld = (n + 15) / 16 * 16;
  return ld % 128 == 0 ? ld + 16 : ld;
}

// A · Bᵀ with at most this many rows of A goes to BlockGemmNT (dot products, no packing): there
// packing Bᵀ cost more than the product, above it the dot products' lane sums cost more.
constexpr int64_t kDotRows = 4;

// Multiply-adds per thread below which splitting a product over threads costs more than it saves.
constexpr int64_t kParallelShare = int64_t{1} << 21;

template <typename T>
std::vector<T>& Scratch() {
  thread_local std::vector<T> scratch;
  return scratch;
}

template <typename T>
void Small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
           int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (trans_b && !trans_a && m <= kDotRows) {
    BlockGemmNT(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (trans_b) {
    const int64_t ld = PackedStride(n);
    b = PackTransposed(b, ldb, n, k, ld, Scratch<T>());
    ldb = ld;
  }
  // op(A)(i, kk) = a[i·a_row + kk·a_col].
  const int64_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;
  const auto rows = [&](int64_t i0, int64_t i1) {
    int64_t k0 = 0;
    do {
      const int64_t kb = std::min(kInnerBlock, k - k0);
      BlockGemm(i1 - i0, n, kb, alpha, a + i0 * a_row + k0 * a_col, a_row, a_col, b + k0 * ldb, ldb,
                k0 == 0 ? beta : T(1), c + i0 * ldc, ldc);
      k0 += kb;
    } while (k0 < k);
  };
  // Row tiles of 4 split over the intra-op threads (BLAS would have used them) once each share is
  // worth a fork; inside a parallel region at::parallel_for runs the whole range here.
  const int64_t tiles = (m + 3) / 4;
  const int64_t per_tile = 4 * n * std::max<int64_t>(k, 1);
  const int64_t grain = std::max<int64_t>(1, kParallelShare / per_tile);
  if (tiles <= grain || at::get_num_threads() == 1) {
    rows(0, m);
    return;
  }
  at::parallel_for(0, tiles, grain,
                   [&](int64_t t0, int64_t t1) { rows(4 * t0, std::min(m, 4 * t1)); });
}

std::atomic<bool>& Fallback() {
  static std::atomic<bool> fallback{!BlasCoreReplacementHere().empty()};
  return fallback;
}

}  // namespace

void SmallGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  Small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void SmallGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
               int64_t ldc) {
  Small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool UseSmallGemm(int64_t m, int64_t n, int64_t k) {
  if (!Fallback().load(std::memory_order_relaxed)) return false;
  // m·n·k without overflow: m·n is checked first and k is below 2^31 (CBLAS takes ints).
  return m <= kSmallGemmLimit && n <= kSmallGemmLimit && m * n <= kSmallGemmLimit &&
         m * n * k <= kSmallGemmLimit;
}

void SetSmallGemmFallbackForTest(bool fallback) {
  Fallback().store(fallback, std::memory_order_relaxed);
}

}  // namespace peftd::adapters
