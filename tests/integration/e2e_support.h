// Helpers of the end-to-end tests that run the real binaries: peftctl (run to completion, its
// stdout/stderr/exit code captured), peftd-worker (started in the background, killed with -9),
// metrics scrapes over HTTP, protobuf JSON parsing of `peftctl --json` output, and waiting.
// Header-only, like peftd_process.h.
#ifndef PEFTD_TESTS_INTEGRATION_E2E_SUPPORT_H_
#define PEFTD_TESTS_INTEGRATION_E2E_SUPPORT_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace peftd::testing {

inline const std::string kPeftctl = PEFTD_BINARY_DIR "/clients/cli/peftctl";
inline const std::string kWorker = PEFTD_BINARY_DIR "/worker/peftd-worker";
inline const std::string kExamples = PEFTD_SOURCE_DIR "/examples/datasets";

// "a b  c" -> {"a", "b", "c"}: command lines in tests read as they would be typed.
inline std::vector<std::string> Words(absl::string_view line) {
  return absl::StrSplit(line, ' ', absl::SkipEmpty());
}

// `a` then `b`.
inline std::vector<std::string> Concat(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline std::filesystem::path FreshTestDir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / absl::StrCat("peftd_e2e_", name, "_", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// fork + execve with `env` added to ours (a value of "\x01" removes the variable); stdout and
// stderr go to the given files ("" = inherit), stdin is /dev/null.
inline pid_t Spawn(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env, const std::string& out_file,
                   const std::string& err_file) {
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (env.count(key) == 0) envs.push_back(kv);
  }
  for (const auto& [k, v] : env) {
    if (v != "\x01") envs.push_back(k + "=" + v);
  }
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const int in = open("/dev/null", O_RDONLY);
  dup2(in, STDIN_FILENO);
  if (!out_file.empty()) {
    const int fd = open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, STDOUT_FILENO);
  }
  if (!err_file.empty()) {
    const int fd = open(err_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(fd, STDERR_FILENO);
  }
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  execve(cargv[0], cargv.data(), cenv.data());
  _exit(127);
}

struct RunResult {
  int exit_code = -1;  // 128 + signal when killed; -1 when it did not end in time (then killed)
  std::string out, err;
  std::string Describe() const {
    return absl::StrCat("exit ", exit_code, "\n--- stdout:\n", out, "\n--- stderr:\n", err);
  }
};

// Runs a command to completion (killed after `limit`).
inline RunResult RunCommand(const std::vector<std::string>& argv,
                            const std::map<std::string, std::string>& env = {},
                            std::chrono::seconds limit = std::chrono::seconds(120)) {
  static int serial = 0;
  const std::string base = (std::filesystem::temp_directory_path() /
                            absl::StrCat("peftd_e2e_run_", getpid(), "_", serial++))
                               .string();
  const std::string out_file = base + ".out", err_file = base + ".err";
  std::filesystem::remove(err_file);
  const pid_t pid = Spawn(argv, env, out_file, err_file);
  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.out = ReadFile(out_file);
  r.err = ReadFile(err_file);
  std::filesystem::remove(out_file);
  std::filesystem::remove(err_file);
  return r;
}

// `peftctl --server ADDR ARGS...`.
inline RunResult Peftctl(const std::string& server, std::vector<std::string> args,
                         const std::map<std::string, std::string>& env = {}) {
  std::vector<std::string> argv = {kPeftctl, "--server", server};
  argv.insert(argv.end(), args.begin(), args.end());
  std::map<std::string, std::string> e = env;
  e.emplace("PEFTD_TOKEN", "\x01");  // only what the test gives
  e.emplace("PEFTD_SERVER", "\x01");
  return RunCommand(argv, e);
}

// A background process (peftd-worker --server ...): its stderr goes to `log_file`.
class BackgroundProcess {
 public:
  BackgroundProcess() = default;
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;
  ~BackgroundProcess() { Kill(); }

  void Start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::string& log_file) {
    pid_ = Spawn(argv, env, log_file, log_file);
  }
  pid_t pid() const { return pid_; }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  // True while the process has not ended (reaps it once it has).
  bool Alive() {
    if (pid_ <= 0) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

 private:
  pid_t pid_ = -1;
};

// Pids of the live children of `parent` whose command name is `comm` (from /proc).
inline std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    const std::string stat = ReadFile(entry.path() / "stat");
    // pid (comm) state ppid ...
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string name = stat.substr(open + 1, close - open - 1);
    std::vector<std::string> rest = absl::StrSplit(stat.substr(close + 2), ' ');
    int ppid = 0;
    if (rest.size() < 2 || !absl::SimpleAtoi(rest[1], &ppid)) continue;
    if (ppid == parent && name == comm && rest[0] != "Z") out.push_back(pid);
  }
  return out;
}

// GET http://HOST:PORT/metrics with a plain socket: the Prometheus text (with the HTTP head).
inline std::string ScrapeMetrics(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  return response;
}

// The sample lines of `text` for metric `name` (exactly that name, with labels) that contain
// every string of `must_contain`.
inline std::vector<std::string> MetricLines(const std::string& text, const std::string& name,
                                            const std::vector<std::string>& must_contain) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, name + "{") && !absl::StartsWith(line, name + " ")) continue;
    bool all = true;
    for (const auto& s : must_contain) all = all && absl::StrContains(line, s);
    if (all) out.emplace_back(line);
  }
  return out;
}

template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

// Protobuf JSON (what `peftctl --json` prints) into `message`; false when it does not parse.
inline bool ParseJson(const std::string& json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  return google::protobuf::util::JsonStringToMessage(json, message, options).ok();
}

}  // namespace peftd::testing

#endif  // PEFTD_TESTS_INTEGRATION_E2E_SUPPORT_H_
