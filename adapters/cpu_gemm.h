// Row-major GEMM on raw CPU buffers through CBLAS (Debian's libblas.so.3: OpenBLAS when
// libopenblas0-openmp is installed, the same library LibTorch's own matmul calls). Autograd
// nodes that own their backward call it directly, without the dispatcher, a tensor per operand
// and a view per transpose: on a small model those cost more than the multiplication.
#ifndef PEFTD_ADAPTERS_CPU_GEMM_H_
#define PEFTD_ADAPTERS_CPU_GEMM_H_

#include <torch/torch.h>

namespace peftd::adapters {

// C (m, n) = alpha · op(A) · op(B) + beta · C, every matrix row-major with its leading
// dimension; op(A) is (m, k), transposed when trans_a (then A is stored (k, m)).
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// True for CPU tensors of float32 or float64: the dtypes Gemm covers, and so the inputs every
// fused CPU autograd node (adapters/, worker/model/) takes; others go to their ATen reference.
bool GemmCovers(const torch::Tensor& t);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_CPU_GEMM_H_
