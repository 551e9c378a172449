#include "adapters/blas_kernel.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

namespace peftd::adapters {

std::string BlasCoreName() {
  // Looked up, not linked: the BLAS behind libblas.so.3 may not be OpenBLAS.
  using CoreName = char* (*)();
  auto fn = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = fn ? fn() : nullptr;
  return name ? std::string(name) : std::string();
}

std::string BlasCoreReplacement(const std::string& detected, bool avx512, bool avx2_fma) {
  // What OpenBLAS's dynamic dispatch falls back to for x86-64 CPUs it does not recognise.
  static const std::set<std::string> kFallbacks = {"Prescott", "Core2", "Penryn", "Nehalem",
                                                   "Atom"};
  if (!kFallbacks.count(detected)) return "";
  if (avx512) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return "";
}

std::string BlasCoreReplacementHere() {
  if (std::getenv("OPENBLAS_CORETYPE")) return "";
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return BlasCoreReplacement(BlasCoreName(), avx512, avx2_fma);
#else
  return "";
#endif
}

void UseBestBlasKernel(char** argv) {
  const std::string core = BlasCoreReplacementHere();
  if (core.empty()) return;
  // Set even if the exec fails: a child this process starts then gets the right kernels.
  setenv("OPENBLAS_CORETYPE", core.c_str(), /*overwrite=*/0);
  execv("/proc/self/exe", argv);
}

}  // namespace peftd::adapters
