#include "worker/signal_watch.h"

#include <pthread.h>
#include <signal.h>

#include <ctime>

namespace peftd::worker {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SignalWatcher::SignalWatcher(std::function<void(int, int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  thread_ = std::thread([this] {
    const sigset_t set = TerminationSignals();
    int count = 0;
    while (!stop_.load()) {
      // A short timeout lets the destructor stop the thread without sending it a signal.
      timespec timeout{0, 200 * 1000 * 1000};
      const int signo = sigtimedwait(&set, nullptr, &timeout);
      if (signo > 0) on_signal_(signo, ++count);
    }
  });
}

SignalWatcher::~SignalWatcher() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace peftd::worker
