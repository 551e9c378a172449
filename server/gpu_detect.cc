#include "server/gpu_detect.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Indices(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(absl::StrCat(i));
  return out;
}

// The executable nvidia-smi would run as: the path itself when it has a '/', else a PATH search.
std::string FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = absl::StrCat(dir, "/", name);
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

int CountNvidiaSmiGpus(const std::string& nvidia_smi) {
  const std::string exe = FindProgram(nvidia_smi);
  if (exe.empty() || ::access(exe.c_str(), X_OK) != 0) return 0;
  // The path is ours (flag default or test), single-quoted for the shell.
  const std::string cmd = absl::StrCat("'", exe, "' -L 2>/dev/null");
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return 0;
  int n = 0;
  char line[1024];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    if (absl::StartsWith(line, "GPU ")) ++n;
  }
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 0;
  return n;
}

}  // namespace

std::vector<std::string> DetectGpus(const std::string& proc_dir, const std::string& nvidia_smi) {
  std::error_code ec;
  int n = 0;
  if (fs::is_directory(proc_dir, ec)) {
    for (fs::directory_iterator it(proc_dir, ec), end; !ec && it != end; it.increment(ec)) ++n;
  }
  if (n > 0) return Indices(n);
  return Indices(CountNvidiaSmiGpus(nvidia_smi));
}

}  // namespace peftd::server
