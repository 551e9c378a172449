// Which OpenBLAS kernels a process asks for (adapters/blas_kernel.h): only in place of OpenBLAS's
// generic fallbacks, and only kernels the CPU can run.
#include "adapters/blas_kernel.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace peftd::adapters {
namespace {

TEST(BlasKernel, FallbackIsReplacedByWhatTheCpuRuns) {
  EXPECT_EQ(BlasCoreReplacement("Prescott", /*avx512=*/true, /*avx2_fma=*/true), "SkylakeX");
  EXPECT_EQ(BlasCoreReplacement("Prescott", false, true), "Haswell");
  EXPECT_EQ(BlasCoreReplacement("Nehalem", false, true), "Haswell");
  EXPECT_EQ(BlasCoreReplacement("Prescott", false, false), "");
}

TEST(BlasKernel, RealDetectionsStand) {
  for (const char* core : {"SkylakeX", "Haswell", "Zen", "Cooperlake", "SapphireRapids", ""}) {
    EXPECT_EQ(BlasCoreReplacement(core, true, true), "") << core;
  }
}

// A user's OPENBLAS_CORETYPE is never overridden.
TEST(BlasKernel, UserChoiceStands) {
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  EXPECT_EQ(BlasCoreReplacementHere(), "");
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace
}  // namespace peftd::adapters
