// OpenBLAS picks its GEMM kernels from the CPU's model number when it is loaded. A CPU newer than
// the OpenBLAS build (Debian 12's 0.3.21 does not know Sapphire or Emerald Rapids) gets the generic
// "Prescott" SSE3 kernels: on such a VM a float32 GEMM ran 3.5 to 4.7 times slower than with the
// AVX-512 "SkylakeX" kernels the same CPU supports (docs/performance.md). The choice can only be
// overridden by OPENBLAS_CORETYPE in the environment before the library loads, so a process that
// finds itself on the fallback re-executes itself with it set.
#ifndef PEFTD_ADAPTERS_BLAS_KERNEL_H_
#define PEFTD_ADAPTERS_BLAS_KERNEL_H_

#include <string>

namespace peftd::adapters {

// The OpenBLAS core in use ("Prescott", "SkylakeX", ...), or "" when the BLAS is not OpenBLAS.
std::string BlasCoreName();

// The OPENBLAS_CORETYPE to ask for when `detected` is one of OpenBLAS's generic fallbacks but the
// CPU can run better kernels: "SkylakeX" with AVX-512 (F, BW, DQ, VL), "Haswell" with AVX2 and
// FMA; "" when `detected` is a real detection or nothing better runs here.
std::string BlasCoreReplacement(const std::string& detected, bool avx512, bool avx2_fma);

// BlasCoreReplacement for this process and CPU ("" when none applies or OPENBLAS_CORETYPE is
// already set: a user's choice stands).
std::string BlasCoreReplacementHere();

// When BlasCoreReplacementHere() names a core, sets OPENBLAS_CORETYPE and executes
// /proc/self/exe again with the same arguments (same pid); returns only when nothing needs doing or
// the exec failed. Call first thing in main(), before any thread starts.
void UseBestBlasKernel(char** argv);

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_BLAS_KERNEL_H_
