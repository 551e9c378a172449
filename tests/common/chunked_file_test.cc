#include "common/chunked_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace peftd {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("peftd_chunked_test_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Collect(const fs::path& p) {
  std::string out;
  absl::Status st = ReadFileChunks(p.string(), [&](absl::string_view bytes) {
    EXPECT_LE(bytes.size(), kFileChunkBytes);
    out.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

TEST(ChunkedFile, WrittenBytesReadBackAndZerosStayHoles) {
  const fs::path dir = TempDir("holes");
  const std::string head = "head";
  const std::string zeros(8 << 20, '\0');
  auto writer = ChunkedFileWriter::Create((dir / "f").string());
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(writer->Append(head).ok());
  for (size_t at = 0; at < zeros.size(); at += kFileChunkBytes) {
    ASSERT_TRUE(writer->Append(absl::string_view(zeros).substr(at, kFileChunkBytes)).ok());
  }
  ASSERT_TRUE(writer->Append("mid").ok());
  ASSERT_TRUE(writer->Append(zeros).ok());  // trailing zeros: the size comes from Finish
  EXPECT_EQ(writer->size(), static_cast<int64_t>(head.size() + 2 * zeros.size() + 3));
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_FALSE(writer->Finish().ok());  // once
  const std::string expected = head + zeros + "mid" + zeros;
  EXPECT_TRUE(ReadAll(dir / "f") == expected);
  EXPECT_TRUE(Collect(dir / "f") == expected);
  struct stat st;
  ASSERT_EQ(::stat((dir / "f").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 4 << 20) << "the zeros were written out";
  fs::remove_all(dir);
}

TEST(ChunkedFile, ReadSparseReadsHolesAsZeros) {
  const fs::path dir = TempDir("sparse");
  const fs::path f = dir / "sparse";
  {
    const int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 5 << 20), 0);
    ASSERT_EQ(::pwrite(fd, "x", 1, 3 << 20), 1);
    ::close(fd);
  }
  std::string expected(5 << 20, '\0');
  expected[3 << 20] = 'x';
  const int fd = ::open(f.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::string got;
  char buf[300000];
  while (true) {
    const ssize_t n = ReadSparse(fd, buf, sizeof(buf));
    ASSERT_GE(n, 0);
    if (n == 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  EXPECT_TRUE(got == expected) << got.size();
  fs::remove_all(dir);
}

TEST(ChunkedFile, WriteErrorsAreReportedNamingTheFile) {
  // /dev/full fails every write with ENOSPC: a full disk.
  auto writer = ChunkedFileWriter::Create("/dev/full");
  ASSERT_TRUE(writer.ok()) << writer.status();
  absl::Status st = writer->Append("bytes");
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(st.message().find("/dev/full"), std::string::npos) << st;
  auto missing = ChunkedFileWriter::Create("/nonexistent-dir/f");
  EXPECT_FALSE(missing.ok());
  EXPECT_EQ(ReadFileChunks("/nonexistent-dir/f", [](absl::string_view) { return absl::OkStatus(); })
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(ChunkedFile, UniqueFilesNeverCollide) {
  const fs::path dir = TempDir("unique");
  const std::string pattern = (dir / "blob.part-XXXXXX").string();
  auto a = ChunkedFileWriter::CreateUnique(pattern);
  auto b = ChunkedFileWriter::CreateUnique(pattern);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->path(), b->path());
  ASSERT_TRUE(a->Append("a").ok());
  ASSERT_TRUE(b->Append("b").ok());
  ASSERT_TRUE(a->Finish().ok());
  ASSERT_TRUE(b->Finish().ok());
  EXPECT_EQ(ReadAll(a->path()), "a");
  EXPECT_EQ(ReadAll(b->path()), "b");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace peftd
