// download: size and sha256 verified before anything is written; the folder appears whole, and
// an existing one is replaced only with --force.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "common/tar.h"
#include "fake_job_service.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

namespace fs = std::filesystem;
using testing::FakeServer;
using testing::RunCli;
using testing::RunResult;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class DownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "src");
    std::ofstream(dir_ / "src" / "adapter_config.json") << "{\"r\": 8}";
    // Bigger than one chunk of the fake, so the stream has several messages.
    std::ofstream(dir_ / "src" / "adapter_model.safetensors") << std::string(5000, 'w');
    std::string archive;
    ASSERT_TRUE(WriteTar((dir_ / "src").string(), [&](absl::string_view bytes) {
                  archive.append(bytes.data(), bytes.size());
                  return absl::OkStatus();
                }).ok());
    server_.service.adapter_archive = archive;
  }
  RunResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", server_.address()});
    return RunCli(std::move(args));
  }
  // Nothing but the source folder in dir_: no target, no temp folder left behind.
  void ExpectNothingWritten() {
    for (const auto& e : fs::directory_iterator(dir_)) {
      EXPECT_EQ(e.path().filename(), "src") << "left behind: " << e.path();
    }
  }
  FakeServer server_;
  fs::path dir_;
};

TEST_F(DownloadTest, VerifiedExtractedIntoTheFolder) {
  // A trailing slash names the same folder (docs write `-o my-adapter/`).
  RunResult r = Run({"download", "j-1", "-o", (dir_ / "out").string() + "/"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Read(dir_ / "out" / "adapter_config.json"), "{\"r\": 8}");
  EXPECT_EQ(Read(dir_ / "out" / "adapter_model.safetensors"), std::string(5000, 'w'));
  EXPECT_TRUE(absl::StrContains(r.out, "(2 files,")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "verified")) << r.out;
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) entries += e.path().filename() != "src";
  EXPECT_EQ(entries, 1);  // no temp folder left
}

TEST_F(DownloadTest, DefaultFolderIsTheServersNameAndJsonDescribesIt) {
  fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  RunResult r = Run({"download", "j-1", "--json"});
  fs::current_path(cwd);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "my-adapter" / "adapter_config.json"));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["path"], "my-adapter");
  EXPECT_EQ(j["sha256"], Sha256Hex(server_.service.adapter_archive));
  EXPECT_EQ(j["files"], nlohmann::json({"adapter_config.json", "adapter_model.safetensors"}));
}

TEST_F(DownloadTest, ShaMismatchRefusedAndNothingWritten) {
  server_.service.corrupt_sha = true;
  RunResult r = Run({"download", "j-1", "-o", (dir_ / "out").string()});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "sha256 mismatch")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "nothing was written")) << r.err;
  ExpectNothingWritten();
}

TEST_F(DownloadTest, SizeMismatchRefusedAndNothingWritten) {
  server_.service.announce_extra_bytes = 10;
  RunResult r = Run({"download", "j-1", "-o", (dir_ / "out").string()});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "the server announced")) << r.err;
  ExpectNothingWritten();
}

TEST_F(DownloadTest, UnsafeArchiveRefusedAndNothingWritten) {
  // A tar entry escaping the folder: the shared extractor refuses it, the temp folder goes.
  std::string evil = server_.service.adapter_archive;
  std::string name = "../escape.txt";
  std::copy(name.begin(), name.end(), evil.begin());
  std::fill(evil.begin() + name.size(), evil.begin() + 100, '\0');
  // Recompute the ustar header checksum (bytes 148..155 as spaces during the sum).
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)evil[i];
  snprintf(&evil[148], 8, "%06o", sum);
  evil[155] = ' ';
  server_.service.adapter_archive = evil;
  RunResult r = Run({"download", "j-1", "-o", (dir_ / "out").string()});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "nothing was written")) << r.err;
  ExpectNothingWritten();
  EXPECT_FALSE(fs::exists(dir_.parent_path() / "escape.txt"));
}

TEST_F(DownloadTest, ExistingFolderNeedsForce) {
  fs::create_directories(dir_ / "out");
  std::ofstream(dir_ / "out" / "old.txt") << "old";
  RunResult r = Run({"download", "j-1", "-o", (dir_ / "out").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "already exists: pass --force")) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "old.txt"));
  r = Run({"download", "j-1", "-o", (dir_ / "out").string(), "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "out" / "old.txt"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "adapter_config.json"));
  // No temp or backup folder left next to it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) entries += e.path().filename() != "src";
  EXPECT_EQ(entries, 1);
}

// The peak resident memory of this process (VmHWM), in bytes; -1 when /proc cannot tell.
int64_t PeakRss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// A merged model can be larger than memory: the archive goes to disk as it arrives and is
// extracted from there, so the download's peak memory does not grow with the archive.
TEST_F(DownloadTest, TheArchiveIsNeverHeldInMemory) {
  const uint64_t big = uint64_t{256} << 20;
  struct RemoveAtExit {  // the sparse files take no disk, but their size shows in listings
    fs::path dir;
    ~RemoveAtExit() {
      std::error_code ec;
      for (const char* name : {"big", "big.tar", "out"}) fs::remove_all(dir / name, ec);
    }
  } cleanup{dir_};
  fs::create_directories(dir_ / "big");
  std::ofstream(dir_ / "big" / "model.safetensors").close();
  fs::resize_file(dir_ / "big" / "model.safetensors", big);  // sparse: no disk, all zeros
  std::ofstream(dir_ / "big" / "config.json") << "{}";
  const fs::path archive = dir_ / "big.tar";
  ASSERT_TRUE(WriteTarFile((dir_ / "big").string(), archive.string()).ok());
  server_.service.adapter_archive_file = archive.string();
  // Reset the high-water mark to the current resident size (Linux 4.0+), to measure this download.
  if (!(std::ofstream("/proc/self/clear_refs") << "5") || PeakRss() < 0) {
    GTEST_SKIP() << "cannot reset the peak RSS here";
  }
  const int64_t before = PeakRss();
  RunResult r = Run({"download", "j-1", "-o", (dir_ / "out").string()});
  const int64_t peak = PeakRss();
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fs::file_size(dir_ / "out" / "model.safetensors"), big);
  // gRPC buffers and the fake server take ~35 MiB; an archive held in memory takes >= 256 MiB.
  EXPECT_LT(peak - before, int64_t{128} << 20)
      << "peak RSS grew by " << (peak - before) << " bytes";
  // Only the source, the archive and the result: no temp file left.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"big", "big.tar", "out", "src"}));
}

TEST_F(DownloadTest, UnknownJob) {
  RunResult r = Run({"download", "j-404"});
  EXPECT_EQ(r.code, 3);
}

}  // namespace
}  // namespace peftd::cli
