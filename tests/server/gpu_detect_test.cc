// GPU detection from a fake driver folder and a fake nvidia-smi.
#include "server/gpu_detect.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

class GpuDetectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("peftd_gpu_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "proc");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Script(const std::string& body) {
    const fs::path p = dir_ / "nvidia-smi";
    std::ofstream(p) << "#!/bin/sh\n" << body;
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  }
  fs::path dir_;
};

TEST_F(GpuDetectTest, DriverFolderCountsFirst) {
  fs::create_directories(dir_ / "proc" / "0000:01:00.0");
  fs::create_directories(dir_ / "proc" / "0000:02:00.0");
  const std::string smi = Script("echo 'GPU 0: x'\n");  // ignored: the driver folder answered
  EXPECT_EQ(DetectGpus((dir_ / "proc").string(), smi), (std::vector<std::string>{"0", "1"}));
}

TEST_F(GpuDetectTest, NvidiaSmiWhenTheDriverFolderIsEmpty) {
  const std::string smi = Script(
      "[ \"$1\" = -L ] || exit 2\n"
      "echo 'GPU 0: NVIDIA A100 (UUID: GPU-aaaa)'\n"
      "echo '  MIG 1g.5gb Device 0: (UUID: MIG-bbbb)'\n"
      "echo 'GPU 1: NVIDIA A100 (UUID: GPU-cccc)'\n");
  EXPECT_EQ(DetectGpus((dir_ / "proc").string(), smi), (std::vector<std::string>{"0", "1"}));
}

TEST_F(GpuDetectTest, NothingFoundMeansNoGpu) {
  EXPECT_TRUE(DetectGpus((dir_ / "absent").string(), (dir_ / "absent-smi").string()).empty());
  EXPECT_TRUE(DetectGpus((dir_ / "proc").string(), "peftd-no-such-program").empty());
  // nvidia-smi present but failing (no driver loaded): no GPU.
  const std::string failing = Script("echo 'GPU 0: ghost'; exit 9\n");
  EXPECT_TRUE(DetectGpus((dir_ / "proc").string(), failing).empty());
}

}  // namespace
}  // namespace peftd::server
