// The row-wise parts of blocked attention (worker/model/attention_core.cc) on raw buffers: the
// softmax of a block of score rows with its log-sum-exp, the probabilities again from that
// log-sum-exp in the backward, and the softmax's input gradient. The float versions are explicit
// 8-lane vector code with their own exp (a Cephes-style polynomial, about 1 ulp), built for AVX2
// and for the baseline ISA and chosen when the library loads: LibTorch's softmax vectorises its
// exp the same way, a plain std::exp loop would be ten times slower. The double versions (tests)
// use std::exp.
#ifndef PEFTD_WORKER_MODEL_ATTENTION_ROWS_H_
#define PEFTD_WORKER_MODEL_ATTENTION_ROWS_H_

#include <cstdint>

namespace peftd::model {

// For each of `rows` rows of n scores (row stride lds): s += mask (row stride ldm; mask may be
// null), then s = softmax(s) in place, with the row's maximum and log Σ exp(s − max) written to
// row_max and log_sum. Kept apart, not as their sum: in a row the mask hides entirely, the
// maximum is the dtype's lowest value and would absorb the log.
void SoftmaxRows(float* s, int64_t lds, int64_t rows, int64_t n, const float* mask, int64_t ldm,
                 float* row_max, float* log_sum);
void SoftmaxRows(double* s, int64_t lds, int64_t rows, int64_t n, const double* mask, int64_t ldm,
                 double* row_max, double* log_sum);

// s = exp(s + mask − row_max − log_sum): the probabilities SoftmaxRows gave, from the scores
// again.
void ProbsFromLse(float* s, int64_t lds, int64_t rows, int64_t n, const float* mask, int64_t ldm,
                  const float* row_max, const float* log_sum);
void ProbsFromLse(double* s, int64_t lds, int64_t rows, int64_t n, const double* mask, int64_t ldm,
                  const double* row_max, const double* log_sum);

// dp = p ⊙ (dp − delta[row]): the scores' gradient from the probabilities' (delta = Σ p ⊙ dp of
// the row, which equals dO·O).
void SoftmaxGradRows(float* dp, int64_t ldd, const float* p, int64_t ldp, int64_t rows, int64_t n,
                     const float* delta);
void SoftmaxGradRows(double* dp, int64_t ldd, const double* p, int64_t ldp, int64_t rows, int64_t n,
                     const double* delta);

}  // namespace peftd::model

#endif  // PEFTD_WORKER_MODEL_ATTENTION_ROWS_H_
