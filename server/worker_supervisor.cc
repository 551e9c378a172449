#include "server/worker_supervisor.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace peftd::server {
namespace {

constexpr char kUnset[] = "<unset>";
// After SIGKILL a process ends as soon as the kernel gets to it; these bound the wait for the
// zombie so that a child stuck in uninterruptible sleep cannot hang shutdown.
constexpr absl::Duration kReapPoll = absl::Milliseconds(10);
constexpr int kMaxReapPolls = 500;

// True when `args` already sets `flag` ("--flag value" or "--flag=value").
bool HasFlag(const std::vector<std::string>& args, absl::string_view flag) {
  for (const std::string& a : args) {
    if (a == flag || absl::StartsWith(a, absl::StrCat(flag, "="))) return true;
  }
  return false;
}

}  // namespace

struct WorkerSupervisor::Child {
  int index = 0;
  std::string worker_id;
  LaunchSpec spec;
  std::string cuda_visible_devices = kUnset;
  std::unique_ptr<ChildProcess> process;
  int starts = 0;
  int consecutive_failures = 0;
  absl::Time started_at;
  absl::Time next_start;
  std::string last_exit;
};

absl::Duration RestartBackoff(int consecutive_failures, absl::Duration min, absl::Duration max) {
  if (consecutive_failures <= 0) return absl::ZeroDuration();
  absl::Duration d = min;
  for (int i = 1; i < consecutive_failures && d < max; ++i) d *= 2;
  return std::min(d, max);
}

std::string LocalDialAddress(const std::string& listen, int bound_port) {
  if (absl::StartsWith(listen, "unix:")) return listen;
  const size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  if (host == "[::]" || host == "::") host = "[::1]";
  return absl::StrCat(host, ":", bound_port);
}

WorkerSupervisorOptions SupervisorOptionsFrom(const ServerOptions& options,
                                              const std::string& server_address) {
  WorkerSupervisorOptions s;
  s.num_workers = options.local_workers;
  s.worker_binary = options.worker_binary;
  s.server_address = server_address;
  s.extra_args = options.worker_args;
  s.gpus = options.gpus;
  s.hide_gpus = options.hide_gpus;
  // The workers' token, never the users': a child holds only what a worker may do.
  s.token_file = options.worker_token_file;
  s.auth_token = options.worker_token;
  s.model_root = options.model_root;
  if (!options.tls_cert.empty()) {
    s.tls_ca = options.tls_cert;
    if (!options.tls_client_ca.empty()) {
      s.tls_cert = options.tls_cert;
      s.tls_key = options.tls_key;
    }
  }
  s.cache_dir = options.data_dir + "/workers";
  s.stop_grace = options.shutdown_grace;
  return s;
}

WorkerSupervisor::WorkerSupervisor(WorkerSupervisorOptions options,
                                   std::unique_ptr<ProcessLauncher> launcher, Clock* clock)
    : options_(std::move(options)),
      launcher_(launcher != nullptr ? std::move(launcher) : MakeRealProcessLauncher()),
      clock_(clock != nullptr ? clock : Clock::Real()) {}

WorkerSupervisor::~WorkerSupervisor() { Stop(); }

LaunchSpec WorkerSupervisor::SpecFor(int index) const {
  const std::string id = absl::StrCat("local-", index);
  LaunchSpec spec;
  spec.argv = {options_.worker_binary, "--server", options_.server_address, "--worker-id", id};
  spec.stdout_to_stderr = true;
  const std::string token_file = ChildTokenFile();
  if (!token_file.empty()) {
    spec.argv.insert(spec.argv.end(), {"--token-file", token_file});
  } else if (!options_.auth_token.empty()) {
    spec.env["PEFTD_TOKEN"] = options_.auth_token;
  }
  const std::vector<std::string>& extra = options_.extra_args;
  if (!options_.tls_ca.empty() && !HasFlag(extra, "--tls-ca")) {
    spec.argv.insert(spec.argv.end(), {"--tls-ca", options_.tls_ca});
  }
  if (!options_.tls_cert.empty() && !options_.tls_key.empty() && !HasFlag(extra, "--tls-cert") &&
      !HasFlag(extra, "--tls-key")) {
    spec.argv.insert(spec.argv.end(),
                     {"--tls-cert", options_.tls_cert, "--tls-key", options_.tls_key});
  }
  if (!options_.model_root.empty()) {
    spec.argv.insert(spec.argv.end(), {"--model-root", options_.model_root});
  }
  if (!options_.cache_dir.empty()) {
    spec.argv.insert(spec.argv.end(), {"--cache-dir", options_.cache_dir + "/" + id});
  }
  spec.argv.insert(spec.argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  if (!options_.gpus.empty()) {
    spec.env["CUDA_VISIBLE_DEVICES"] = options_.gpus[index % options_.gpus.size()];
  } else if (options_.hide_gpus) {
    spec.env["CUDA_VISIBLE_DEVICES"] = "";
  }
  return spec;
}

std::string WorkerSupervisor::ChildTokenFile() const {
  if (!options_.token_file.empty()) return options_.token_file;
  if (!options_.auth_token.empty() && !options_.cache_dir.empty()) {
    return options_.cache_dir + "/token";
  }
  return "";
}

absl::Status WorkerSupervisor::WriteTokenFile() const {
  const std::string path = ChildTokenFile();
  if (path.empty() || path == options_.token_file) return absl::OkStatus();
  std::error_code ec;
  if (std::filesystem::create_directories(options_.cache_dir, ec)) {
    std::filesystem::permissions(options_.cache_dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: cannot create \"", options_.cache_dir, "\": ", ec.message()));
  }
  // Written under a temp name created 0600 and renamed: the token is never readable by others,
  // not even for a moment, and a worker never reads half of it.
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write the workers' token file \"", tmp, "\": ", std::strerror(errno)));
  }
  const std::string& token = options_.auth_token;
  const bool written =
      ::write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size());
  const bool closed = ::close(fd) == 0;
  if (!written || !closed || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write the workers' token file \"", path, "\": ", why));
  }
  return absl::OkStatus();
}

absl::Status WorkerSupervisor::Start() {
  struct stat st;
  if (::stat(options_.worker_binary.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      ::access(options_.worker_binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--worker-binary: \"", options_.worker_binary,
        "\" is not an executable file; build peftd-worker next to peftd, pass its path, or run "
        "with --local-workers 0 and start remote workers with `peftd-worker --server HOST:PORT`"));
  }
  RETURN_IF_ERROR(WriteTokenFile());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return absl::FailedPreconditionError("worker supervisor already started");
    if (stopping_) return absl::FailedPreconditionError("worker supervisor already stopped");
    started_ = true;
    const absl::Time now = clock_->Now();
    for (int i = 0; i < options_.num_workers; ++i) {
      auto child = std::make_unique<Child>();
      child->index = i;
      child->worker_id = absl::StrCat("local-", i);
      child->spec = SpecFor(i);
      auto it = child->spec.env.find("CUDA_VISIBLE_DEVICES");
      if (it != child->spec.env.end()) child->cuda_visible_devices = it->second.value_or(kUnset);
      child->next_start = now;
      children_.push_back(std::move(child));
    }
  }
  if (options_.gpus.size() > 0 &&
      static_cast<size_t>(options_.num_workers) > options_.gpus.size()) {
    spdlog::warn("{} local workers share {} GPUs ({}): some GPUs run two jobs at once",
                 options_.num_workers, options_.gpus.size(), absl::StrJoin(options_.gpus, ","));
  }
  if (options_.monitor_thread) {
    monitor_ = std::thread([this] { MonitorLoop(); });
  } else {
    PollOnce();
  }
  return absl::OkStatus();
}

void WorkerSupervisor::MonitorLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    PollOnce();
    lock.lock();
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.poll_interval),
                   [this] { return stopping_; });
  }
}

void WorkerSupervisor::LaunchLocked(Child& child) {
  const absl::Time now = clock_->Now();
  auto process = launcher_->Launch(child.spec);
  ++child.starts;
  if (!process.ok()) {
    ++child.consecutive_failures;
    const absl::Duration delay =
        RestartBackoff(child.consecutive_failures, options_.min_backoff, options_.max_backoff);
    child.last_exit = std::string(process.status().message());
    child.next_start = now + delay;
    spdlog::error("worker {}: {}; retrying in {}", child.worker_id,
                  std::string(process.status().message()), absl::FormatDuration(delay));
    return;
  }
  child.process = std::move(*process);
  child.started_at = now;
  spdlog::info("worker {} started (pid {}, CUDA_VISIBLE_DEVICES={}): {}", child.worker_id,
               child.process->pid(), child.cuda_visible_devices,
               absl::StrJoin(child.spec.argv, " "));
}

void WorkerSupervisor::PollOnce() {
  std::vector<std::pair<std::string, std::string>> exits;  // (worker id, how), told unlocked
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !started_) return;
    const absl::Time now = clock_->Now();
    for (auto& c : children_) {
      Child& child = *c;
      if (child.process != nullptr) {
        const std::optional<ExitStatus> exit = child.process->Poll();
        if (!exit.has_value()) continue;
        const absl::Duration ran = now - child.started_at;
        // A child that ran for a while before dying is a fresh failure, not part of a crash loop.
        if (ran >= options_.stable_after) child.consecutive_failures = 0;
        ++child.consecutive_failures;
        const absl::Duration delay =
            RestartBackoff(child.consecutive_failures, options_.min_backoff, options_.max_backoff);
        child.last_exit = exit->ToString();
        child.next_start = now + delay;
        spdlog::warn("worker {} (pid {}) ended with {} after {}; restarting in {}", child.worker_id,
                     child.process->pid(), child.last_exit, absl::FormatDuration(ran),
                     absl::FormatDuration(delay));
        exits.emplace_back(child.worker_id, absl::StrCat("(pid ", child.process->pid(),
                                                         ") ended with ", child.last_exit));
        child.process.reset();
      }
      if (child.process == nullptr && now >= child.next_start) LaunchLocked(child);
    }
  }
  if (options_.on_exit) {
    for (const auto& [id, how] : exits) options_.on_exit(id, how);
  }
}

void WorkerSupervisor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  // Joining the monitor thread ends the thread that launched the children, so the kernel sends
  // them PR_SET_PDEATHSIG's SIGTERM right now. Without a monitor thread we send it ourselves; never
  // both: a second SIGTERM tells peftd-worker to quit at once, skipping its orderly stop.
  const bool kernel_signalled = monitor_.joinable();
  if (monitor_.joinable()) monitor_.join();

  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Child*> alive;
  for (auto& c : children_) {
    if (c->process != nullptr) {
      if (!kernel_signalled) c->process->Terminate();
      alive.push_back(c.get());
    }
  }
  if (alive.empty()) return;
  spdlog::info("stopping {} local worker(s): SIGTERM, SIGKILL after {}", alive.size(),
               absl::FormatDuration(options_.stop_grace));
  const absl::Time deadline = clock_->Now() + options_.stop_grace;
  auto reap = [&] {
    alive.erase(std::remove_if(alive.begin(), alive.end(),
                               [](Child* c) {
                                 auto exit = c->process->Poll();
                                 if (!exit.has_value()) return false;
                                 c->last_exit = exit->ToString();
                                 spdlog::info("worker {} (pid {}) stopped: {}", c->worker_id,
                                              c->process->pid(), c->last_exit);
                                 c->process.reset();
                                 return true;
                               }),
                alive.end());
  };
  reap();
  while (!alive.empty() && clock_->Now() < deadline) {
    options_.sleep(std::min(options_.poll_interval, deadline - clock_->Now()));
    reap();
  }
  if (alive.empty()) return;
  for (Child* c : alive) {
    spdlog::warn("worker {} (pid {}) still running {} after SIGTERM: SIGKILL", c->worker_id,
                 c->process->pid(), absl::FormatDuration(options_.stop_grace));
    c->process->Kill();
  }
  for (int i = 0; i < kMaxReapPolls && !alive.empty(); ++i) {
    reap();
    if (!alive.empty()) options_.sleep(kReapPoll);
  }
  for (Child* c : alive) {
    spdlog::error("worker {} (pid {}) did not end after SIGKILL; leaving it", c->worker_id,
                  c->process->pid());
  }
}

std::vector<WorkerSupervisor::ChildInfo> WorkerSupervisor::Children() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ChildInfo> out;
  for (const auto& c : children_) {
    ChildInfo info;
    info.worker_id = c->worker_id;
    info.pid = c->process != nullptr ? c->process->pid() : 0;
    info.starts = c->starts;
    info.last_exit = c->last_exit;
    info.cuda_visible_devices = c->cuda_visible_devices;
    info.next_start = c->next_start;
    out.push_back(info);
  }
  return out;
}

}  // namespace peftd::server
