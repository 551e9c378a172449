// Learning-rate schedule: linear warmup from 0 to the peak, then linear or cosine decay to 0 at the
// last step, or constant. Steps are optimizer steps, 0-based: LearningRate(0) is the rate of the
// first update (HF transformers' get_*_schedule_with_warmup convention).
#ifndef PEFTD_WORKER_TRAIN_LR_SCHEDULE_H_
#define PEFTD_WORKER_TRAIN_LR_SCHEDULE_H_

#include <cstdint>

namespace peftd::train {

enum class LrDecay { kLinear, kCosine, kConstant };

struct LrScheduleOptions {
  double peak_lr = 2e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  LrDecay decay = LrDecay::kLinear;
};

// The learning rate at optimizer step `step` (0-based).
double LearningRate(const LrScheduleOptions& options, int64_t step);

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_LR_SCHEDULE_H_
