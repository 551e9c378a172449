#include "server/process_launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace peftd::server {
namespace {

class RealChild final : public ChildProcess {
 public:
  explicit RealChild(pid_t pid) : pid_(pid) {}
  pid_t pid() const override { return pid_; }
  std::optional<ExitStatus> Poll() override {
    if (exited_) return exit_;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return std::nullopt;
    exited_ = true;
    // r < 0 (ECHILD): someone else reaped it; report it as gone rather than alive forever.
    exit_ = r < 0 ? ExitStatus{-1, 0} : ExitStatus::FromWaitStatus(status);
    return exit_;
  }
  void Terminate() override { Signal(SIGTERM); }
  void Kill() override { Signal(SIGKILL); }

 private:
  // The whole process group (the child leads its own), so helpers it started go too; the pid
  // alone when the group is gone.
  void Signal(int sig) {
    if (exited_) return;
    if (::kill(-pid_, sig) != 0) ::kill(pid_, sig);
  }

  const pid_t pid_;
  bool exited_ = false;
  ExitStatus exit_;
};

class RealLauncher final : public ProcessLauncher {
 public:
  absl::StatusOr<std::unique_ptr<ChildProcess>> Launch(const LaunchSpec& spec) override {
    if (spec.argv.empty() || spec.argv[0].empty()) {
      return absl::InvalidArgumentError("launch: empty command line");
    }
    // Everything the child touches between fork and exec is prepared here: after fork only
    // async-signal-safe calls are allowed (other threads may hold malloc's locks).
    std::map<std::string, std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (eq == nullptr) continue;
      env[std::string(*e, static_cast<size_t>(eq - *e))] = std::string(eq + 1);
    }
    for (const auto& [k, v] : spec.env) {
      if (v.has_value()) {
        env[k] = *v;
      } else {
        env.erase(k);
      }
    }
    std::vector<std::string> env_strings;
    env_strings.reserve(env.size());
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = spec.argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) {
      return absl::InternalError(
          absl::StrCat("launch ", spec.argv[0], ": pipe: ", std::strerror(errno)));
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int err = errno;
      ::close(pipefd[0]);
      ::close(pipefd[1]);
      return absl::ResourceExhaustedError(
          absl::StrCat("launch ", spec.argv[0], ": fork: ", std::strerror(err)));
    }
    if (pid == 0) {
      ::close(pipefd[0]);
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      // The parent may have died between fork and prctl: then nobody would send the signal.
      if (::getppid() != parent) ::_exit(127);
      // Signals the server blocks or ignores must not leak into the worker.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      if (spec.stdout_to_stderr) ::dup2(STDERR_FILENO, STDOUT_FILENO);
      ::execve(argv[0], argv.data(), envp.data());
      const int err = errno;
      (void)!::write(pipefd[1], &err, sizeof(err));
      ::_exit(127);
    }
    // Also from the parent: whichever of the two runs first, the group exists before any signal.
    ::setpgid(pid, pid);
    ::close(pipefd[1]);
    int child_errno = 0;
    ssize_t n;
    do {
      n = ::read(pipefd[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    ::close(pipefd[0]);
    if (n == sizeof(child_errno)) {
      int status;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      const std::string why = std::strerror(child_errno);
      if (child_errno == ENOENT || child_errno == EACCES || child_errno == ENOEXEC) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot execute \"", spec.argv[0], "\": ", why));
      }
      return absl::InternalError(absl::StrCat("cannot execute \"", spec.argv[0], "\": ", why));
    }
    return std::unique_ptr<ChildProcess>(new RealChild(pid));
  }
};

}  // namespace

ExitStatus ExitStatus::FromWaitStatus(int wait_status) {
  ExitStatus s;
  if (WIFSIGNALED(wait_status)) {
    s.signal = WTERMSIG(wait_status);
  } else if (WIFEXITED(wait_status)) {
    s.code = WEXITSTATUS(wait_status);
  } else {
    s.code = -1;
  }
  return s;
}

std::string ExitStatus::ToString() const {
  if (signal > 0) {
    const char* name = ::strsignal(signal);
    return absl::StrCat("signal ", signal, " (", name != nullptr ? name : "?", ")");
  }
  return absl::StrCat("exit code ", code);
}

std::unique_ptr<ProcessLauncher> MakeRealProcessLauncher() {
  return std::make_unique<RealLauncher>();
}

absl::StatusOr<ExitStatus> RunAndWait(const LaunchSpec& spec) {
  RealLauncher launcher;
  auto child = launcher.Launch(spec);
  if (!child.ok()) return child.status();
  // A blocking wait: the child is ours alone (waitpid on its pid, never -1).
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid((*child)->pid(), &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    return absl::InternalError(
        absl::StrCat("waiting for ", spec.argv[0], ": ", std::strerror(errno)));
  }
  return ExitStatus::FromWaitStatus(status);
}

}  // namespace peftd::server
