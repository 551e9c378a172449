#include "adapters/block_gemm.h"

#include <atomic>
#include <cstring>

namespace peftd::adapters {
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

// C[i, j] for rows [i, i + R) of A, R ≤ 2, as dot products of rows of A with rows of B (both
// contiguous along the inner dimension): tiles of R × 4 vector accumulators, summed across lanes
// at the end. For A · Bᵀ with few rows of A, where packing Bᵀ would cost as much as the product.
template <int R, typename V, typename T>
PEFTD_INLINE void DotRows(int64_t i, int64_t n, int64_t p, T alpha, const T* a, int64_t lda,
                          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(T);
  constexpr int kCols = 4;
  const T* ai = a + i * lda;
  const auto store = [&](int r, int64_t j, T sum) {
    T& out = c[(i + r) * ldc + j];
    out = beta != T(0) ? alpha * sum + beta * out : alpha * sum;
  };
  const auto lanes_sum = [](V v) {
    T sum = 0;
    for (int64_t l = 0; l < kLanes; ++l) sum += v[l];
    return sum;
  };
  int64_t j = 0;
  for (; j + kCols <= n; j += kCols) {
    V acc[R][kCols] = {};
    int64_t k = 0;
    for (; k + kLanes <= p; k += kLanes) {
      V bv[kCols];
#pragma GCC unroll 4
      for (int q = 0; q < kCols; ++q) bv[q] = Load<V>(b + (j + q) * ldb + k);
#pragma GCC unroll 2
      for (int r = 0; r < R; ++r) {
        const V av = Load<V>(ai + r * lda + k);
#pragma GCC unroll 4
        for (int q = 0; q < kCols; ++q) acc[r][q] += av * bv[q];
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int q = 0; q < kCols; ++q) {
        T sum = lanes_sum(acc[r][q]);
        for (int64_t kk = k; kk < p; ++kk) sum += ai[r * lda + kk] * b[(j + q) * ldb + kk];
        store(r, j + q, sum);
      }
    }
  }
  for (; j < n; ++j) {
    V acc[R] = {};
    int64_t k = 0;
    for (; k + kLanes <= p; k += kLanes) {
      const V bv = Load<V>(b + j * ldb + k);
      for (int r = 0; r < R; ++r) acc[r] += Load<V>(ai + r * lda + k) * bv;
    }
    for (int r = 0; r < R; ++r) {
      T sum = lanes_sum(acc[r]);
      for (int64_t kk = k; kk < p; ++kk) sum += ai[r * lda + kk] * b[j * ldb + kk];
      store(r, j, sum);
    }
  }
}

template <typename V, typename T>
PEFTD_INLINE void Dot(int64_t m, int64_t n, int64_t p, T alpha, const T* a, int64_t lda, const T* b,
                      int64_t ldb, T beta, T* c, int64_t ldc) {
  int64_t i = 0;
  for (; i + 2 <= m; i += 2) DotRows<2, V>(i, n, p, alpha, a, lda, b, ldb, beta, c, ldc);
  for (; i < m; ++i) DotRows<1, V>(i, n, p, alpha, a, lda, b, ldb, beta, c, ldc);
}

// The two builds of each kernel. The baseline one is compiled for the ISA of the whole build.
__attribute__((target("arch=x86-64-v3"))) void Avx2(int64_t m, int64_t w, int64_t p, float alpha,
                                                    const float* a, int64_t a_row, int64_t a_col,
                                                    const float* b, int64_t ldb, float beta,
                                                    float* c, int64_t ldc) {
  Gemm<F8>(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}
__attribute__((target("arch=x86-64-v3"))) void Avx2(int64_t m, int64_t w, int64_t p, double alpha,
                                                    const double* a, int64_t a_row, int64_t a_col,
                                                    const double* b, int64_t ldb, double beta,
                                                    double* c, int64_t ldc) {
  Gemm<D4>(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}
void Baseline(int64_t m, int64_t w, int64_t p, float alpha, const float* a, int64_t a_row,
              int64_t a_col, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  Gemm<F8>(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}
void Baseline(int64_t m, int64_t w, int64_t p, double alpha, const double* a, int64_t a_row,
              int64_t a_col, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  Gemm<D4>(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

#define PEFTD_DOT_BUILD(NAME, TARGET)                                                           \
  TARGET void NAME(int64_t m, int64_t n, int64_t p, float alpha, const float* a, int64_t lda,   \
                   const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {            \
    Dot<F8>(m, n, p, alpha, a, lda, b, ldb, beta, c, ldc);                                      \
  }                                                                                             \
  TARGET void NAME(int64_t m, int64_t n, int64_t p, double alpha, const double* a, int64_t lda, \
                   const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {         \
    Dot<D4>(m, n, p, alpha, a, lda, b, ldb, beta, c, ldc);                                      \
  }
PEFTD_DOT_BUILD(DotAvx2, __attribute__((target("arch=x86-64-v3"))))
PEFTD_DOT_BUILD(DotBaseline, )
#undef PEFTD_DOT_BUILD

bool CpuHasAvx2Fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v3");
}

// Chosen once, at the first call; an explicit choice instead of target_clones so that tests can
// run the baseline build on a CPU that has AVX2.
std::atomic<GemmIsa>& Isa() {
  static std::atomic<GemmIsa> isa{CpuHasAvx2Fma() ? GemmIsa::kAvx2Fma : GemmIsa::kBaseline};
  return isa;
}

}  // namespace

GemmIsa GemmIsaInUse() { return Isa().load(std::memory_order_relaxed); }

bool SetGemmIsaForTest(GemmIsa isa) {
  if (isa == GemmIsa::kAvx2Fma && !CpuHasAvx2Fma()) return false;
  Isa().store(isa, std::memory_order_relaxed);
  return true;
}

namespace {

// Both dtypes pick their kernel the same way: the AVX2 build when the ISA in use allows it.
template <typename T>
void PickGemm(int64_t m, int64_t w, int64_t p, T alpha, const T* a, int64_t a_row, int64_t a_col,
              const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (GemmIsaInUse() == GemmIsa::kAvx2Fma) {
    Avx2(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
  } else {
    Baseline(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
  }
}

template <typename T>
void PickGemmNT(int64_t m, int64_t n, int64_t p, T alpha, const T* a, int64_t lda, const T* b,
                int64_t ldb, T beta, T* c, int64_t ldc) {
  if (GemmIsaInUse() == GemmIsa::kAvx2Fma) {
    DotAvx2(m, n, p, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    DotBaseline(m, n, p, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

}  // namespace

void BlockGemm(int64_t m, int64_t w, int64_t p, float alpha, const float* a, int64_t a_row,
               int64_t a_col, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  PickGemm(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

void BlockGemm(int64_t m, int64_t w, int64_t p, double alpha, const double* a, int64_t a_row,
               int64_t a_col, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  PickGemm(m, w, p, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

void BlockGemmNT(int64_t m, int64_t n, int64_t p, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  PickGemmNT(m, n, p, alpha, a, lda, b, ldb, beta, c, ldc);
}

void BlockGemmNT(int64_t m, int64_t n, int64_t p, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  PickGemmNT(m, n, p, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace peftd::adapters
