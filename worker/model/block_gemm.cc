#include "worker/model/block_gemm.h"

#include <cstring>

namespace peftd::model {
namespace {

// 32-byte GCC vectors: 8 floats or 4 doubles (one AVX register in the x86-64-v3 clones, two SSE
// registers in the baseline ones).
typedef float F8 __attribute__((vector_size(32)));
typedef double D4 __attribute__((vector_size(32)));

#define PEFTD_INLINE inline __attribute__((always_inline))

template <typename V, typename T>
PEFTD_INLINE V Load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename V, typename T>
PEFTD_INLINE void Store(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename V, typename T>
PEFTD_INLINE void StoreScaled(T* c, V acc, T alpha, T beta) {
  V out = acc * alpha;
  if (beta != T(0)) out += Load<V>(c) * beta;
  Store(c, out);
}

// Rows [i, i + R) of C, R ≤ 4, every column: tiles of 2 vectors, then one vector, then scalars.
// The loops over R are unrolled so that the accumulators stay in registers.
template <int R, typename V, typename T>
PEFTD_INLINE void Rows(int64_t i, int64_t w, int64_t p, T alpha, const T* a, int64_t a_row,
                       int64_t a_col, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  const T* ai = a + i * a_row;
  int64_t j = 0;
  for (; j + 2 * kLanes <= w; j += 2 * kLanes) {
    V acc[R][2] = {};
    for (int64_t k = 0; k < p; ++k) {
      const V b0 = Load<V>(b + k * ldb + j), b1 = Load<V>(b + k * ldb + j + kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const T x = ai[r * a_row + k * a_col];
        acc[r][0] += x * b0;
        acc[r][1] += x * b1;
      }
    }
    for (int r = 0; r < R; ++r) {
      StoreScaled(c + (i + r) * ldc + j, acc[r][0], alpha, beta);
      StoreScaled(c + (i + r) * ldc + j + kLanes, acc[r][1], alpha, beta);
    }
  }
  if (j + kLanes <= w) {
    V acc[R] = {};
    for (int64_t k = 0; k < p; ++k) {
      const V b0 = Load<V>(b + k * ldb + j);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r] += ai[r * a_row + k * a_col] * b0;
    }
    for (int r = 0; r < R; ++r) StoreScaled(c + (i + r) * ldc + j, acc[r], alpha, beta);
    j += kLanes;
  }
  for (; j < w; ++j) {
    for (int r = 0; r < R; ++r) {
      T sum = 0;
      for (int64_t k = 0; k < p; ++k) sum += ai[r * a_row + k * a_col] * b[k * ldb + j];
      T& out = c[(i + r) * ldc + j];
      out = beta != T(0) ? alpha * sum + beta * out : alpha * sum;
    }
  }
}

template <typename V, typename T>
PEFTD_INLINE void Gemm(int64_t m, int64_t w, int64_t p, T alpha, const T* a, int64_t a_row,
                       int64_t a_col, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) Rows<4, V>(i, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
  for (; i < m; ++i) Rows<1, V>(i, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

}  // namespace

__attribute__((target_clones("arch=x86-64-v3", "default"))) void BlockGemm(
    int64_t m, int64_t w, int64_t p, float alpha, const float* a, int64_t a_row, int64_t a_col,
    const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  Gemm<F8>(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

__attribute__((target_clones("arch=x86-64-v3", "default"))) void BlockGemm(
    int64_t m, int64_t w, int64_t p, double alpha, const double* a, int64_t a_row, int64_t a_col,
    const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  Gemm<D4>(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

}  // namespace peftd::model
