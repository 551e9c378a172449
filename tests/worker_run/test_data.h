// Datasets and a model folder the job-runner tests write for themselves.
#ifndef PEFTD_TESTS_WORKER_RUN_TEST_DATA_H_
#define PEFTD_TESTS_WORKER_RUN_TEST_DATA_H_

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"

namespace peftd::testing {

namespace fs = std::filesystem;

// A fresh folder under the temp dir, unique per process and name.
inline fs::path FreshDir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("peftd_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Text records a random model cannot predict and an adapter learns fast: runs of the alphabet
// ("defghijk...") from varying offsets.
inline void WriteAlphabetText(const fs::path& path, int records, int offset_seed, int length = 24) {
  std::ofstream out(path);
  for (int i = 0; i < records; ++i) {
    std::string s;
    const int start = (offset_seed * 7 + i * 5) % 26;
    for (int j = 0; j < length; ++j) s.push_back(static_cast<char>('a' + (start + j) % 26));
    out << nlohmann::json{{"text", s}}.dump() << "\n";
  }
}

// Classification records: label 1 when the text ends in "x", 0 when it ends in "o".
inline void WriteEndingLabels(const fs::path& path, int records, int seed) {
  std::ofstream out(path);
  for (int i = 0; i < records; ++i) {
    std::string s;
    for (int j = 0; j < 10; ++j)
      s.push_back(static_cast<char>('a' + (seed * 13 + i * 7 + j * 3) % 20));
    const int label = (i + seed) % 2;
    s += label ? " x" : " o";
    out << nlohmann::json{{"text", s}, {"label", label}}.dump() << "\n";
  }
}

inline void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

}  // namespace peftd::testing

#endif  // PEFTD_TESTS_WORKER_RUN_TEST_DATA_H_
