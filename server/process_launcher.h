// Starting and stopping child processes, behind an interface so the worker supervisor can be
// tested with a fake (no processes, fake clock) and with the real one on /bin/sh scripts.
#ifndef PEFTD_SERVER_PROCESS_LAUNCHER_H_
#define PEFTD_SERVER_PROCESS_LAUNCHER_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace peftd::server {

// How a child ended: exit code, or the signal that killed it.
struct ExitStatus {
  int code = 0;    // meaningful when signal == 0
  int signal = 0;  // > 0 when killed by a signal
  bool ok() const { return signal == 0 && code == 0; }
  // "exit code 3", "signal 9 (Killed)".
  std::string ToString() const;
  static ExitStatus FromWaitStatus(int wait_status);
};

struct LaunchSpec {
  std::vector<std::string> argv;  // argv[0] is the executable path (no PATH search)
  // Added to (or replacing in) the parent's environment; std::nullopt removes the variable.
  std::map<std::string, std::optional<std::string>> env;
  // The child's stdout goes to our stderr: peftd's stdout carries only its machine-readable
  // "listening" line, which a child writing first would displace.
  bool stdout_to_stderr = false;
};

// A started child. Destroying the handle does not stop the process.
class ChildProcess {
 public:
  virtual ~ChildProcess() = default;
  virtual pid_t pid() const = 0;
  // Non-blocking: the exit status once the child has ended (reaping it), else nullopt.
  virtual std::optional<ExitStatus> Poll() = 0;
  virtual void Terminate() = 0;  // SIGTERM to the child's process group
  virtual void Kill() = 0;       // SIGKILL to the child's process group
};

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  // Starts the child. An error (naming the executable) when it cannot be executed at all.
  virtual absl::StatusOr<std::unique_ptr<ChildProcess>> Launch(const LaunchSpec& spec) = 0;
};

// fork + execve. Children get their own process group (a Ctrl-C on the server's terminal reaches
// the server, which then stops them in order) and PR_SET_PDEATHSIG=SIGTERM, so a server killed
// with -9 does not leave workers behind. PDEATHSIG fires when the *thread* that launched exits:
// launch from a thread that outlives the child (the supervisor uses its monitor thread).
// Exec failures (missing file, not executable) are reported by Launch through a CLOEXEC pipe.
std::unique_ptr<ProcessLauncher> MakeRealProcessLauncher();

// Runs `spec` with the real launcher and waits for it; its output goes to ours.
absl::StatusOr<ExitStatus> RunAndWait(const LaunchSpec& spec);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_PROCESS_LAUNCHER_H_
