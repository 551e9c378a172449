// adapters::Gemm's path for products too small for BLAS to pay off: the register-tiled loops of
// block_gemm.h, with every transpose combination of a BLAS GEMM. A product of a few MFLOP runs
// on the calling thread; a larger one is split by rows over the intra-op threads.
//
// Why: the tiny model's projections (hidden 64, intermediate 176) are GEMMs of a few MFLOP at
// most, where BLAS spends much of each call packing its panels; and where OpenBLAS does not know
// the CPU (blas_kernel.h) it runs its generic SSE3 kernels, which these loops outrun about 2x at
// every shape of a tiny step. Where OpenBLAS knows the CPU its own kernels (with small-matrix
// paths for AVX-512) are faster than these loops, so there Gemm keeps to BLAS (UseSmallGemm;
// figures in docs/performance.md).
#ifndef PEFTD_ADAPTERS_SMALL_GEMM_H_
#define PEFTD_ADAPTERS_SMALL_GEMM_H_

#include <cstdint>

namespace peftd::adapters {

// C (m, n) = alpha · op(A) · op(B) + beta · C, with Gemm's (cpu_gemm.h) conventions; beta = 0
// never reads C. A transposed B is packed into the calling thread's scratch first.
void SmallGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);
void SmallGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
               int64_t ldc);

// Whether Gemm takes SmallGemm for a float32 (m × k) · (k × n) product (float64 stays on BLAS,
// cpu_gemm.cc says why): only while OpenBLAS runs a
// generic fallback core on a CPU with AVX2 and FMA (BlasCoreReplacementHere() names a core), and
// up to kSmallGemmLimit multiply-adds (m·n·k): every projection of the tiny model, not the ~100M
// model's. Where OpenBLAS knows the CPU its kernels won at nearly every small shape measured.
inline constexpr int64_t kSmallGemmLimit = int64_t{1} << 28;
bool UseSmallGemm(int64_t m, int64_t n, int64_t k);
// Test-only: whether UseSmallGemm sees a fallback core from now on.
void SetSmallGemmFallbackForTest(bool fallback);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_SMALL_GEMM_H_
