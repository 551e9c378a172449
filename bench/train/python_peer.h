// Runs a PyTorch peer script of bench/train on Debian's python3-torch and returns the JSON it
// prints, or {"error": ...}. `keep_freed_memory`: glibc told to keep what it frees
// (GLIBC_TUNABLES), as the best-configured users run PyTorch; without it, glibc's defaults.
#ifndef PEFTD_BENCH_TRAIN_PYTHON_PEER_H_
#define PEFTD_BENCH_TRAIN_PYTHON_PEER_H_

#include <cstdio>
#include <string>

#include "nlohmann/json.hpp"

namespace peftd::bench {

// `script_and_args`: the script's file name under bench/train/ and its arguments.
inline nlohmann::json RunPythonPeer(const std::string& script_and_args, bool keep_freed_memory) {
  std::string cmd;
  if (keep_freed_memory) {
    cmd =
        "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:"
        "glibc.malloc.trim_threshold=4294967295 ";
  }
  cmd += std::string("/usr/bin/python3 ") + PEFTD_SOURCE_DIR + "/bench/train/" + script_and_args +
         " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {{"error", "cannot run python3"}};
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int rc = pclose(p);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (rc != 0 || j.is_discarded()) {
    return {{"error", "the peer did not run (is Debian's python3-torch installed?)"}};
  }
  j["glibc_keeps_freed_memory"] = keep_freed_memory;
  return j;
}

}  // namespace peftd::bench

#endif  // PEFTD_BENCH_TRAIN_PYTHON_PEER_H_
