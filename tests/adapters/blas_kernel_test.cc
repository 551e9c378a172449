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

// On a fallback the advice names the variable and the value; elsewhere there is none.
TEST(BlasKernel, AdviceNamesTheVariable) {
  unsetenv("OPENBLAS_CORETYPE");
  const std::string core = BlasCoreReplacementHere();
  const std::string advice = BlasFallbackAdvice();
  if (core.empty()) {
    EXPECT_EQ(advice, "");
  } else {
    EXPECT_NE(advice.find("OPENBLAS_CORETYPE=" + core), std::string::npos) << advice;
  }
}

// A user's OPENBLAS_CORETYPE is never second-guessed.
TEST(BlasKernel, UserChoiceStands) {
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  EXPECT_EQ(BlasCoreReplacementHere(), "");
  EXPECT_EQ(BlasFallbackAdvice(), "");
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace
}  // namespace peftd::adapters
