// datasets validate: local, no server; every bad line named; --json; exit 0 or 4.
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "fake_job_service.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

using testing::RunCli;

class ValidateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(ValidateTest, GoodFileNeedsNoServer) {
  std::string f = Write("ok.jsonl",
                        "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n"
                        "{\"prompt\": \"3+3=\", \"completion\": \"6\"}\n");
  // An address where nothing listens: validate must not try it.
  auto r = RunCli({"--server", "127.0.0.1:1", "datasets", "validate", f});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, f + ": ok, 2 records of prompt_completion (2 lines, 76 B)\n");
  r = RunCli({"datasets", "validate", f, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["format"], "prompt_completion");
  EXPECT_EQ(j["records"], 2);
}

TEST_F(ValidateTest, EveryBadLineNamed) {
  std::string f = Write("bad.jsonl",
                        "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                        "{\"prompt\": \"a\"}\n"
                        "not json\n"
                        "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
  auto r = RunCli({"datasets", "validate", f});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.err, "2 bad lines of 4")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "line 2: field \"completion\"")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "line 3:")) << r.err;
  r = RunCli({"datasets", "validate", f, "--json", "--max-errors", "1"});
  EXPECT_EQ(r.code, 4);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["bad_lines"], 2);
  ASSERT_EQ(j["errors"].size(), 1u);
  EXPECT_EQ(j["errors"][0]["line"], 2);
  EXPECT_EQ(j["errors"][0]["field"], "completion");
}

TEST_F(ValidateTest, TaskMustFitTheFormat) {
  std::string f = Write("cls.jsonl", "{\"text\": \"good\", \"label\": 1}\n");
  EXPECT_EQ(RunCli({"datasets", "validate", f, "--task", "seq_cls", "--num-labels", "2"}).code, 0);
  auto r = RunCli({"datasets", "validate", f, "--task", "causal_lm"});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.err, "need --task seq_cls")) << r.err;
  r = RunCli({"datasets", "validate", f, "--num-labels", "1"});
  EXPECT_EQ(r.code, 4) << r.err;
}

TEST_F(ValidateTest, MissingAndEmptyFiles) {
  auto r = RunCli({"datasets", "validate", (dir_ / "nope.jsonl").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err, "nope.jsonl")) << r.err;
  r = RunCli({"datasets", "validate", Write("empty.jsonl", "")});
  EXPECT_EQ(r.code, 4);
  EXPECT_TRUE(absl::StrContains(r.err, "no records")) << r.err;
}

}  // namespace
}  // namespace peftd::cli
