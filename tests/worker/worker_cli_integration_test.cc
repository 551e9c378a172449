// The peftd-worker binary as a user runs it: make-tiny-model and demo --json.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
const std::string kWorker = std::string(PEFTD_BINARY_DIR) + "/worker/peftd-worker";

std::pair<int, std::string> RunWorker(const std::string& args) {
  std::string out;
  FILE* p = popen((kWorker + " " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  return {WEXITSTATUS(pclose(p)), out};
}

TEST(WorkerCli, MakeTinyModelWritesAnHfFolder) {
  const fs::path dir = fs::temp_directory_path() / ("peftd_cli_tiny" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto [rc, out] = RunWorker("make-tiny-model " + dir.string() + " --shards 2");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "tokenizer.json"));
  auto [bad_rc, bad_out] = RunWorker("make-tiny-model");
  EXPECT_NE(bad_rc, 0);
  EXPECT_NE(bad_out.find("dir is required"), std::string::npos) << bad_out;
}

TEST(WorkerCli, DemoTrainsEveryMethodAndWritesAdapters) {
  const fs::path dir = fs::temp_directory_path() / ("peftd_cli_demo" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto [rc, out] =
      RunWorker("demo --steps 6 --threads 1 --json --dir " + dir.string() + " 2>/dev/null");
  ASSERT_EQ(rc, 0) << out;
  auto rows = nlohmann::json::parse(out.substr(out.find('[')));
  ASSERT_EQ(rows.size(), 10u);
  for (const auto& r : rows) {
    EXPECT_GT(r["trainable_parameters"].get<int64_t>(), 0) << r;
    EXPECT_TRUE(
        fs::exists(fs::path(r["adapter_dir"].get<std::string>()) / "adapter_model.safetensors"))
        << r;
  }
}

}  // namespace
