// Time, injected. The scheduler, leases and heartbeats read time only through a Clock so that tests
// can advance a FakeClock instead of sleeping.
#ifndef PEFTD_COMMON_CLOCK_H_
#define PEFTD_COMMON_CLOCK_H_

#include <mutex>

#include "absl/time/time.h"

namespace peftd {

// Thread-safe source of wall-clock time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // The process-wide real clock; never deleted.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1700000000)) : now_(start) {}
  absl::Time Now() const override;
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable std::mutex mu_;
  absl::Time now_;  // guarded by mu_
};

}  // namespace peftd

#endif  // PEFTD_COMMON_CLOCK_H_
