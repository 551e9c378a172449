// The register-tiled vector loops behind the small GEMMs of blocked attention
// (worker/model/attention_core.cc) and of adapters::Gemm (small_gemm.h): C (m × w) = alpha · A · B
// + beta · C, with B's rows and C's rows contiguous (w is the vectorised dimension) and A read
// through two strides, so that both A (m × p row-major: a_row = lda, a_col = 1) and Aᵀ (A stored p
// × m: a_row = 1, a_col = lda) need no copy.
//
// Why not cpu_gemm.h's BLAS: these products have one side of head_dim (16 to 128) and the other
// of a block (32 rows) or of the visible keys, so BLAS spends much of each call packing its
// panels; and where OpenBLAS does not know the CPU it runs its generic SSE3 kernels. Tiles of 4
// rows × 2 vectors of C stay in registers over the whole inner dimension; the float and double
// versions are built for x86-64-v3 (AVX2 + FMA) and the baseline ISA and picked at load time
// (GemmIsaInUse).
#ifndef PEFTD_ADAPTERS_BLOCK_GEMM_H_
#define PEFTD_ADAPTERS_BLOCK_GEMM_H_

#include <cstdint>

namespace peftd::adapters {

// Which build of the kernels runs: x86-64-v3 where the CPU has it, else the baseline.
enum class GemmIsa { kBaseline, kAvx2Fma };
GemmIsa GemmIsaInUse();
// Test-only: makes the kernels run `isa` from now on (kAvx2Fma only where the CPU has it: returns
// false and changes nothing otherwise). Not for concurrent use with the kernels.
bool SetGemmIsaForTest(GemmIsa isa);

// C[i, j] = alpha · Σ_k A(i, k) · B[k·ldb + j] + beta · C[i·ldc + j] for i < m, j < w, k < p,
// A(i, k) = a[i·a_row + k·a_col]. beta = 0 never reads C.
void BlockGemm(int64_t m, int64_t w, int64_t p, float alpha, const float* a, int64_t a_row,
               int64_t a_col, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void BlockGemm(int64_t m, int64_t w, int64_t p, double alpha, const double* a, int64_t a_row,
               int64_t a_col, const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// C (m × n) = alpha · A · Bᵀ + beta · C with A (m × p, row stride lda) and B (n × p, row stride
// ldb) both read along p: for few rows of A, where packing Bᵀ for BlockGemm would cost as much as
// the product. beta = 0 never reads C.
void BlockGemmNT(int64_t m, int64_t n, int64_t p, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void BlockGemmNT(int64_t m, int64_t n, int64_t p, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_BLOCK_GEMM_H_
