#include "worker/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace peftd::train {

double LearningRate(const LrScheduleOptions& options, int64_t step) {
  const int64_t warmup = std::max<int64_t>(options.warmup_steps, 0);
  if (step < warmup) {
    return options.peak_lr * static_cast<double>(step) / static_cast<double>(warmup);
  }
  if (options.decay == LrDecay::kConstant) return options.peak_lr;
  const int64_t decay_steps = std::max<int64_t>(options.total_steps - warmup, 1);
  const double progress =
      std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay_steps), 0.0, 1.0);
  if (options.decay == LrDecay::kLinear) return options.peak_lr * (1.0 - progress);
  return options.peak_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace peftd::train
