// SIGINT / SIGTERM handling for the worker's commands without async-signal-unsafe handlers: the
// signals are blocked in every thread (BlockTerminationSignals before any thread starts, so
// LibTorch's and gRPC's pools inherit the mask) and a watcher thread receives them with
// sigtimedwait and calls back in ordinary thread context.
#ifndef PEFTD_WORKER_SIGNAL_WATCH_H_
#define PEFTD_WORKER_SIGNAL_WATCH_H_

#include <atomic>
#include <functional>
#include <thread>

namespace peftd::worker {

// Blocks SIGINT and SIGTERM in the calling thread (call first thing in main).
void BlockTerminationSignals();

class SignalWatcher {
 public:
  // `on_signal(signo, count)` runs on the watcher thread for every SIGINT / SIGTERM; `count` is
  // 1 for the first, 2 for the second, ...
  explicit SignalWatcher(std::function<void(int signo, int count)> on_signal);
  ~SignalWatcher();  // stops the watcher thread

 private:
  std::function<void(int, int)> on_signal_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_SIGNAL_WATCH_H_
