// OpenBLAS picks its GEMM kernels from the CPU's model number when it is loaded. A CPU newer than
// the OpenBLAS build (Debian 12's 0.3.21 does not know Sapphire or Emerald Rapids) gets the generic
// "Prescott" SSE3 kernels: on such a VM a float32 GEMM ran 3.5 to 4.7 times slower than with the
// AVX-512 "SkylakeX" kernels the same CPU supports (docs/performance.md). The choice can only be
// overridden by OPENBLAS_CORETYPE in the environment before the library loads. That variable is
// the operator's to set (tests and CI leave OPENBLAS_* as the environment has them): peftd-worker
// and the benchmarks only say, at start, which value this CPU would run faster with.
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

// One line of advice when BlasCoreReplacementHere() names a core ("" otherwise): which kernels
// OpenBLAS fell back to and the OPENBLAS_CORETYPE to set in the environment.
std::string BlasFallbackAdvice();

}  // namespace peftd::adapters

#endif  // PEFTD_ADAPTERS_BLAS_KERNEL_H_
