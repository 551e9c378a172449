// Private to the lease loop's files (lease_loop.cc: heartbeats, leases, uploads, completion;
// lease_inputs.cc: a lease turned into JobInputs). Not part of its contract.
#ifndef PEFTD_WORKER_LEASE_LOOP_INTERNAL_H_
#define PEFTD_WORKER_LEASE_LOOP_INTERNAL_H_

#include <atomic>
#include <thread>

#include "absl/time/time.h"
#include "peftd/v1/worker.pb.h"
#include "worker/lease_loop.h"
#include "worker/progress_reporter.h"

namespace peftd::worker {

inline constexpr absl::Duration kRpcDeadline = absl::Seconds(30);
inline constexpr absl::Duration kBlobDeadline = absl::Minutes(30);

struct LeaseLoop::ActiveJob {
  v1::Lease lease;
  std::atomic<bool> cancelled{false};
  std::atomic<bool> dropped{false};
  std::atomic<bool> finished{false};
  std::thread thread;
  JobReport progress;  // events and step durations drained by heartbeats
};

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_LEASE_LOOP_INTERNAL_H_
