#include "common/tar.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace peftd {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_tar_test_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void WriteFile(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Tar, RoundTripIsExactAndDeterministic) {
  fs::path src = TempDir("src");
  WriteFile(src / "adapter_config.json", "{\"r\": 8}");
  WriteFile(src / "sub" / "adapter_model.safetensors",
            std::string(1000, '\x01') + std::string(3, '\0'));
  WriteFile(src / "empty", "");
  auto tar = TarDirectory(src.string());
  ASSERT_TRUE(tar.ok()) << tar.status();
  EXPECT_EQ(tar->size() % 512, 0u);
  EXPECT_EQ(*tar, *TarDirectory(src.string()));
  fs::path dst = TempDir("dst");
  ASSERT_TRUE(UntarToDirectory(*tar, dst.string()).ok());
  EXPECT_EQ(ReadFile(dst / "adapter_config.json"), "{\"r\": 8}");
  EXPECT_EQ(ReadFile(dst / "sub" / "adapter_model.safetensors"),
            ReadFile(src / "sub" / "adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(dst / "empty"));
}

TEST(Tar, RefusesEscapingAndTruncatedArchives) {
  fs::path src = TempDir("evil");
  WriteFile(src / "aaaaaaaaaa", "x");
  std::string tar = *TarDirectory(src.string());
  std::string evil = tar;
  std::memcpy(evil.data(), "../../etc/x",
              11);  // checksum is not checked: the path check must refuse
  auto st = UntarToDirectory(evil, TempDir("out1").string());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("unsafe path"), std::string::npos);
  auto truncated = UntarToDirectory(tar.substr(0, 512), TempDir("out2").string());
  EXPECT_EQ(truncated.code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace peftd
