// adapters::Gemm's small-product path (adapters/small_gemm.h) and the kernels under it
// (adapters/block_gemm.h) against a plain fp64 triple loop: every transpose combination, alpha
// and beta (beta = 0 never reading C), leading dimensions wider than the matrices, odd sizes,
// inner dimensions longer than one block, the row split over threads, both builds of the kernels.
#include "adapters/small_gemm.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "adapters/blas_kernel.h"
#include "adapters/block_gemm.h"
#include "adapters/cpu_gemm.h"

namespace peftd::adapters {
namespace {

struct Shape {
  bool trans_a, trans_b;
  int64_t m, n, k;
};

std::string Name(const Shape& s, double beta) {
  return std::string(s.trans_a ? "T" : "N") + (s.trans_b ? "T" : "N") +
         " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
         " beta=" + std::to_string(beta);
}

// Runs `gemm` on random operands stored with leading dimensions 5 wider than their rows and
// checks every element of C against the fp64 loop, and C's padding columns untouched.
template <typename T, typename Fn>
void Check(const Shape& s, T alpha, T beta, Fn gemm) {
  std::mt19937 rng(static_cast<uint32_t>(s.m * 131 + s.n * 17 + s.k));
  std::uniform_real_distribution<double> dist(-1, 1);
  const int64_t a_rows = s.trans_a ? s.k : s.m, a_cols = s.trans_a ? s.m : s.k;
  const int64_t b_rows = s.trans_b ? s.n : s.k, b_cols = s.trans_b ? s.k : s.n;
  const int64_t lda = a_cols + 5, ldb = b_cols + 5, ldc = s.n + 5;
  std::vector<T> a(a_rows * lda), b(b_rows * ldb), c(s.m * ldc);
  for (T& x : a) x = static_cast<T>(dist(rng));
  for (T& x : b) x = static_cast<T>(dist(rng));
  // beta = 0 must not read C: NaN there would show in the result.
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (T& x : c) x = beta == T(0) ? nan : static_cast<T>(dist(rng));
  const std::vector<T> c0 = c;
  gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(),
       ldc);
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const T got = c[i * ldc + j];
      if (j >= s.n) {  // padding: untouched (NaN stays NaN)
        ASSERT_TRUE(std::isnan(c0[i * ldc + j]) ? std::isnan(got) : got == c0[i * ldc + j])
            << Name(s, beta) << " wrote padding at " << i << "," << j;
        continue;
      }
      double sum = 0, mag = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double x = s.trans_a ? a[p * lda + i] : a[i * lda + p];
        const double y = s.trans_b ? b[j * ldb + p] : b[p * ldb + j];
        sum += x * y;
        mag += std::abs(x * y);
      }
      double want = double(alpha) * sum;
      mag = std::abs(double(alpha)) * mag + 1;
      if (beta != T(0)) {
        want += double(beta) * double(c0[i * ldc + j]);
        mag += std::abs(double(beta) * double(c0[i * ldc + j]));
      }
      ASSERT_NEAR(got, want, tol * mag * (s.k + 1)) << Name(s, beta) << " at " << i << "," << j;
    }
  }
}

template <typename T>
void SmallGemmT(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  SmallGemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::vector<GemmIsa> IsasHere() {
  std::vector<GemmIsa> isas = {GemmIsa::kBaseline};
  const GemmIsa in_use = GemmIsaInUse();
  if (SetGemmIsaForTest(GemmIsa::kAvx2Fma)) isas.push_back(GemmIsa::kAvx2Fma);
  SetGemmIsaForTest(in_use);
  return isas;
}

class SmallGemmIsa : public ::testing::TestWithParam<GemmIsa> {
 protected:
  void SetUp() override {
    in_use_ = GemmIsaInUse();
    ASSERT_TRUE(SetGemmIsaForTest(GetParam()));
    ASSERT_EQ(GemmIsaInUse(), GetParam());
  }
  void TearDown() override { SetGemmIsaForTest(in_use_); }
  GemmIsa in_use_ = GemmIsa::kBaseline;
};

template <typename T>
void AllCombinations() {
  const int64_t sizes[] = {1, 3, 7, 17, 65};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (int64_t m : sizes) {
        for (int64_t n : sizes) {
          for (int64_t k : sizes) {
            const Shape s{ta, tb, m, n, k};
            Check<T>(s, T(0.75), T(0), SmallGemmT<T>);
            Check<T>(s, T(-1.25), T(1.5), SmallGemmT<T>);
            if (::testing::Test::HasFatalFailure()) return;
          }
        }
      }
      // Inner dimensions over one block (256) and k = 0 (C = beta · C).
      for (int64_t k : {0, 257, 600}) {
        Check<T>({ta, tb, 9, 19, k}, T(0.5), T(0), SmallGemmT<T>);
        Check<T>({ta, tb, 9, 19, k}, T(0.5), T(-2), SmallGemmT<T>);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(SmallGemmIsa, FloatEveryTransposeAgainstFp64) { AllCombinations<float>(); }
TEST_P(SmallGemmIsa, DoubleEveryTransposeAgainstFp64) { AllCombinations<double>(); }

// A product large enough to be split by rows over two threads (m not a multiple of the 4-row
// tile), and the same product inside a parallel region, where it runs on one thread.
TEST_P(SmallGemmIsa, RowSplitOverThreads) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Check<float>({ta, tb, 1029, 67, 70}, 1.0f, 0.0f, SmallGemmT<float>);
      Check<double>({ta, tb, 1029, 67, 70}, 0.5, 2.0, SmallGemmT<double>);
    }
  }
  at::parallel_for(0, 2, 1, [&](int64_t, int64_t) {
    Check<float>({false, true, 1029, 67, 70}, 1.0f, 1.0f, SmallGemmT<float>);
  });
  at::set_num_threads(threads);
}

INSTANTIATE_TEST_SUITE_P(Isas, SmallGemmIsa, ::testing::ValuesIn(IsasHere()),
                         [](const ::testing::TestParamInfo<GemmIsa>& info) {
                           return info.param == GemmIsa::kAvx2Fma ? std::string("Avx2Fma")
                                                                  : std::string("Baseline");
                         });

// Which products leave BLAS: the tiny model's under a fallback core, none otherwise.
TEST(SmallGemm, LimitFollowsTheBlasCore) {
  SetSmallGemmFallbackForTest(true);
  EXPECT_TRUE(UseSmallGemm(4096, 352, 64));
  EXPECT_TRUE(UseSmallGemm(64, 512, 4096));
  EXPECT_TRUE(UseSmallGemm(1, 1, 0));
  EXPECT_FALSE(UseSmallGemm(1024, 768, 768));
  EXPECT_FALSE(UseSmallGemm(int64_t{1} << 30, 1, 1));
  EXPECT_FALSE(UseSmallGemm(1, int64_t{1} << 30, int64_t{1} << 30));
  SetSmallGemmFallbackForTest(false);
  EXPECT_FALSE(UseSmallGemm(4, 16, 64));
  EXPECT_FALSE(UseSmallGemm(4096, 352, 64));
  SetSmallGemmFallbackForTest(!BlasCoreReplacementHere().empty());
}

// Gemm gives the same products whichever path it takes.
TEST(SmallGemm, GemmAgreesOnBothPaths) {
  for (bool fallback : {true, false}) {
    SetSmallGemmFallbackForTest(fallback);
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        Check<float>({ta, tb, 33, 70, 65}, 1.0f, 0.0f, [](auto... args) { Gemm(args...); });
        Check<double>({ta, tb, 33, 70, 65}, 2.0, 0.5, [](auto... args) { Gemm(args...); });
      }
    }
  }
  SetSmallGemmFallbackForTest(!BlasCoreReplacementHere().empty());
}

}  // namespace
}  // namespace peftd::adapters
