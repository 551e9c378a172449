// `peftd-worker tokenize` and `peftctl datasets inspect` (which runs it) as a user runs them on
// the tiny model: the report's counts, the rendered record's loss mask, --json, and a bad line
// named with its number and a non-zero exit.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
const std::string kWorker = std::string(PEFTD_BINARY_DIR) + "/worker/peftd-worker";
const std::string kPeftctl = std::string(PEFTD_BINARY_DIR) + "/clients/cli/peftctl";

std::pair<int, std::string> Shell(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  return {WEXITSTATUS(pclose(p)), out};
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("peftd_tokenize" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto [rc, out] = Shell(kWorker + " make-tiny-model " + (dir_ / "tiny").string());
    ASSERT_EQ(rc, 0) << out;
    std::ofstream(dir_ / "train.jsonl") << "{\"prompt\": \"2+2=\", \"completion\": \" 4\"}\n"
                                        << "{\"prompt\": \"Say hi:\", \"completion\": \" hi\"}\n";
    std::ofstream(dir_ / "bad.jsonl") << "{\"prompt\": \"2+2=\", \"completion\": \" 4\"}\n"
                                      << "{\"prompt\": \"x\"}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Model() const { return " --model " + (dir_ / "tiny").string(); }
  fs::path dir_;
};

TEST_F(TokenizeCli, WorkerReportsTokensLossAndPacking) {
  auto [rc, out] = Shell(kWorker + " tokenize " + (dir_ / "train.jsonl").string() + Model() +
                         " --json 2>/dev/null");
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["format"], "prompt_completion");
  EXPECT_EQ(j["records"], 2);
  EXPECT_EQ(j["truncated_records"], 0);
  EXPECT_EQ(j["packed_rows"], 1);  // two short records share one row of 512
  EXPECT_GT(j["loss_tokens"].get<int64_t>(), 0);
  EXPECT_LT(j["loss_tokens"].get<int64_t>(), j["tokens"].get<int64_t>());
  // Record 0: BOS and the prompt carry no loss, the completion and EOS do.
  const auto& tokens = j["sample"]["tokens"];
  ASSERT_GE(tokens.size(), 3u);
  EXPECT_FALSE(tokens[0]["loss"].get<bool>());
  EXPECT_TRUE(tokens[tokens.size() - 1]["loss"].get<bool>());
  std::string prompt, completion;
  for (const auto& t : tokens) (t["loss"].get<bool>() ? completion : prompt) += t["text"];
  EXPECT_NE(prompt.find("2+2="), std::string::npos) << prompt;
  EXPECT_EQ(completion.find(" 4"), 0u) << completion;

  auto [bad_rc, bad_out] = Shell(kWorker + " tokenize " + (dir_ / "bad.jsonl").string() + Model());
  EXPECT_EQ(bad_rc, 1);
  EXPECT_NE(bad_out.find("line 2"), std::string::npos) << bad_out;
}

TEST_F(TokenizeCli, PeftctlInspectRelaysTheWorkersReport) {
  auto [rc, out] = Shell(kPeftctl + " datasets inspect " + (dir_ / "train.jsonl").string() +
                         Model() + " --record 1");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("records             2"), std::string::npos) << out;
  EXPECT_NE(out.find("Say hi:⟦ hi"), std::string::npos) << out;
  auto [json_rc, json_out] = Shell(kPeftctl + " datasets inspect " +
                                   (dir_ / "train.jsonl").string() + Model() + " --json");
  ASSERT_EQ(json_rc, 0) << json_out;
  EXPECT_EQ(nlohmann::json::parse(json_out)["records"], 2);
  auto [bad_rc, bad_out] =
      Shell(kPeftctl + " datasets inspect " + (dir_ / "bad.jsonl").string() + Model());
  EXPECT_EQ(bad_rc, 4) << bad_out;  // kExitInvalid
  EXPECT_NE(bad_out.find("line 2"), std::string::npos) << bad_out;
  auto [missing_rc, missing_out] =
      Shell(kPeftctl + " datasets inspect " + (dir_ / "train.jsonl").string() + Model() +
            " --worker-binary /nonexistent/peftd-worker");
  EXPECT_EQ(missing_rc, 1) << missing_out;
  EXPECT_NE(missing_out.find("--worker-binary"), std::string::npos) << missing_out;
}

}  // namespace
