#include "worker/model/attention_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace peftd::model {
namespace {

// GCC vector extensions: 8 floats, lowered to two SSE registers on the baseline ISA and to one
// AVX register in the x86-64-v3 clone of each entry point.
typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;

#define PEFTD_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define PEFTD_INLINE inline __attribute__((always_inline))

PEFTD_INLINE F8 Load(const float* p) {
  F8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

PEFTD_INLINE void Store(float* p, F8 v) { std::memcpy(p, &v, sizeof(v)); }

PEFTD_INLINE F8 Splat(float x) { return F8{} + x; }

// exp(x) = 2^n · e^r with n = round(x·log2 e) and |r| ≤ ln2/2, e^r from Cephes' expf polynomial;
// 0 below −80 (masked scores are the dtype's lowest value). The cut is above the float range's
// end (−87.3) on purpose: a product there can be subnormal, which costs a microcode assist per
// lane, and masked scores are half of a causal block. e^−80 is 2e−35, far below a float's
// resolution of a softmax sum that is at least 1.
PEFTD_INLINE F8 Exp(F8 x) {
  const F8 lo = Splat(-80.0f), hi = Splat(88.3762626647949f);
  F8 xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  F8 fx = xc * 1.44269504088896341f + 0.5f;
  F8 n = __builtin_convertvector(__builtin_convertvector(fx, I8), F8);
  n = n > fx ? n - 1.0f : n;  // floor
  const F8 r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  F8 y = Splat(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const I8 bits = (__builtin_convertvector(n, I8) + 127) << 23;
  F8 pow2n;
  std::memcpy(&pow2n, &bits, sizeof(pow2n));
  const F8 out = y * pow2n;
  return x < lo ? F8{} : out;
}

// The tail of a row (fewer than 8 entries) through a padded vector: `fill` stands for the
// entries past n.
PEFTD_INLINE F8 LoadTail(const float* p, int64_t n, float fill) {
  float buf[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) buf[j] = j < n ? p[j] : fill;
  return Load(buf);
}

PEFTD_INLINE void StoreTail(float* p, int64_t n, F8 v) {
  float buf[kLanes];
  Store(buf, v);
  for (int64_t j = 0; j < n; ++j) p[j] = buf[j];
}

PEFTD_INLINE float HorizontalMax(F8 v) {
  float m = v[0];
  for (int j = 1; j < kLanes; ++j) m = std::max(m, v[j]);
  return m;
}

PEFTD_INLINE float HorizontalSum(F8 v) {
  float s = 0;
  for (int j = 0; j < kLanes; ++j) s += v[j];
  return s;
}

}  // namespace

PEFTD_VECTOR_CLONES void SoftmaxRows(float* s, int64_t lds, int64_t rows, int64_t n,
                                     const float* mask, int64_t ldm, float* row_max,
                                     float* log_sum) {
  const int64_t body = n / kLanes * kLanes, tail = n - body;
  const float lowest = std::numeric_limits<float>::lowest();
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * lds;
    const float* m = mask ? mask + i * ldm : nullptr;
    F8 vmax = Splat(lowest);
    for (int64_t j = 0; j < body; j += kLanes) {
      F8 v = Load(row + j);
      if (m) v += Load(m + j);
      Store(row + j, v);
      vmax = v > vmax ? v : vmax;
    }
    if (tail) {
      F8 v = LoadTail(row + body, tail, lowest);
      if (m) v += LoadTail(m + body, tail, 0.0f);
      StoreTail(row + body, tail, v);
      vmax = v > vmax ? v : vmax;
    }
    const float max = HorizontalMax(vmax);
    F8 vsum{};
    for (int64_t j = 0; j < body; j += kLanes) {
      const F8 e = Exp(Load(row + j) - max);
      Store(row + j, e);
      vsum += e;
    }
    if (tail) {
      const F8 e = Exp(LoadTail(row + body, tail, lowest) - max);
      StoreTail(row + body, tail, e);
      vsum += e;
    }
    const float sum = HorizontalSum(vsum), inv = 1.0f / sum;
    for (int64_t j = 0; j < body; j += kLanes) Store(row + j, Load(row + j) * inv);
    for (int64_t j = body; j < n; ++j) row[j] *= inv;
    row_max[i] = max;
    log_sum[i] = std::log(sum);
  }
}

PEFTD_VECTOR_CLONES void ProbsFromLse(float* s, int64_t lds, int64_t rows, int64_t n,
                                      const float* mask, int64_t ldm, const float* row_max,
                                      const float* log_sum) {
  const int64_t body = n / kLanes * kLanes, tail = n - body;
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * lds;
    const float* m = mask ? mask + i * ldm : nullptr;
    const float max = row_max[i], l = log_sum[i];
    for (int64_t j = 0; j < body; j += kLanes) {
      F8 v = Load(row + j);
      if (m) v += Load(m + j);
      Store(row + j, Exp((v - max) - l));
    }
    if (tail) {
      F8 v = LoadTail(row + body, tail, 0.0f);
      if (m) v += LoadTail(m + body, tail, 0.0f);
      StoreTail(row + body, tail, Exp((v - max) - l));
    }
  }
}

PEFTD_VECTOR_CLONES void SoftmaxGradRows(float* dp, int64_t ldd, const float* p, int64_t ldp,
                                         int64_t rows, int64_t n, const float* delta) {
  const int64_t body = n / kLanes * kLanes;
  for (int64_t i = 0; i < rows; ++i) {
    float* d = dp + i * ldd;
    const float* pr = p + i * ldp;
    const float di = delta[i];
    for (int64_t j = 0; j < body; j += kLanes) Store(d + j, Load(pr + j) * (Load(d + j) - di));
    for (int64_t j = body; j < n; ++j) d[j] = pr[j] * (d[j] - di);
  }
}

void SoftmaxRows(double* s, int64_t lds, int64_t rows, int64_t n, const double* mask, int64_t ldm,
                 double* row_max, double* log_sum) {
  for (int64_t i = 0; i < rows; ++i) {
    double* row = s + i * lds;
    double max = std::numeric_limits<double>::lowest();
    for (int64_t j = 0; j < n; ++j) {
      if (mask) row[j] += mask[i * ldm + j];
      max = std::max(max, row[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += row[j] = std::exp(row[j] - max);
    for (int64_t j = 0; j < n; ++j) row[j] /= sum;
    row_max[i] = max;
    log_sum[i] = std::log(sum);
  }
}

void ProbsFromLse(double* s, int64_t lds, int64_t rows, int64_t n, const double* mask, int64_t ldm,
                  const double* row_max, const double* log_sum) {
  for (int64_t i = 0; i < rows; ++i) {
    double* row = s + i * lds;
    for (int64_t j = 0; j < n; ++j) {
      row[j] = std::exp((row[j] + (mask ? mask[i * ldm + j] : 0.0) - row_max[i]) - log_sum[i]);
    }
  }
}

void SoftmaxGradRows(double* dp, int64_t ldd, const double* p, int64_t ldp, int64_t rows, int64_t n,
                     const double* delta) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < n; ++j) dp[i * ldd + j] = p[i * ldp + j] * (dp[i * ldd + j] - delta[i]);
  }
}

}  // namespace peftd::model
