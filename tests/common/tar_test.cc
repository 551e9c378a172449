#include "common/tar.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_tar_test_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Removes a folder when the test ends, also when it fails half-way (the big-file test must never
// leave its 8 GiB sparse files behind).
struct RemoveAtExit {
  fs::path path;
  ~RemoveAtExit() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

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

std::string TarToString(const fs::path& dir) {
  std::string out;
  absl::Status st = WriteTar(dir.string(), [&](absl::string_view bytes) {
    out.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

// Extracts from memory through the streaming reader, `piece` bytes per read (odd sizes exercise
// the reader's reassembly of headers and data).
absl::Status ExtractString(const std::string& archive, const fs::path& dir, size_t piece = 777) {
  size_t at = 0;
  return ExtractTar(
      [&](char* buf, size_t size) -> absl::StatusOr<size_t> {
        const size_t n = std::min({size, piece, archive.size() - at});
        std::memcpy(buf, archive.data() + at, n);
        at += n;
        return n;
      },
      dir.string());
}

void FixChecksum(std::string* archive, size_t header_at) {
  char* h = archive->data() + header_at;
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)h[i];
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
}

bool HaveGnuTar() { return std::system("tar --version > /dev/null 2>&1") == 0; }

std::string RunCapture(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(command.c_str(), "r"), ::pclose);
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p.get())) > 0) out.append(buf, n);
  return out;
}

TEST(Tar, RoundTripIsExactAndDeterministic) {
  fs::path src = TempDir("src");
  RemoveAtExit cleanup{src};
  WriteFile(src / "adapter_config.json", "{\"r\": 8}");
  WriteFile(src / "sub" / "adapter_model.safetensors",
            std::string(3 << 20, '\x01') + std::string(3, '\0'));
  WriteFile(src / "empty", "");
  const std::string tar = TarToString(src);
  EXPECT_EQ(tar.size() % 512, 0u);
  EXPECT_EQ(tar, TarToString(src));
  // The file form holds the same bytes.
  const fs::path file = src.string() + ".tar";
  RemoveAtExit cleanup_file{file};
  ASSERT_TRUE(WriteTarFile(src.string(), file.string()).ok());
  EXPECT_EQ(ReadFile(file), tar);
  fs::path dst = TempDir("dst");
  RemoveAtExit cleanup_dst{dst};
  ASSERT_TRUE(ExtractTarFile(file.string(), dst.string()).ok());
  EXPECT_EQ(ReadFile(dst / "adapter_config.json"), "{\"r\": 8}");
  EXPECT_EQ(ReadFile(dst / "sub" / "adapter_model.safetensors"),
            ReadFile(src / "sub" / "adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(dst / "empty"));
  fs::path dst2 = TempDir("dst2");
  RemoveAtExit cleanup_dst2{dst2};
  ASSERT_TRUE(ExtractString(tar, dst2).ok());
  EXPECT_EQ(ReadFile(dst2 / "sub" / "adapter_model.safetensors"),
            ReadFile(src / "sub" / "adapter_model.safetensors"));
}

TEST(Tar, RefusesEscapingAndTruncatedArchives) {
  fs::path src = TempDir("evil");
  RemoveAtExit cleanup{src};
  WriteFile(src / "aaaaaaaaaa", std::string(2000, 'x'));
  const std::string tar = TarToString(src);
  std::string evil = tar;
  std::memcpy(evil.data(), "../../etc/x", 11);
  FixChecksum(&evil, 0);
  auto st = ExtractString(evil, TempDir("out1"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("unsafe path"), std::string::npos) << st;
  evil = tar;
  std::memcpy(evil.data(), "/etc/x\0\0\0\0\0", 11);
  FixChecksum(&evil, 0);
  EXPECT_EQ(ExtractString(evil, TempDir("out1")).code(), absl::StatusCode::kInvalidArgument);

  auto header_only = ExtractString(tar.substr(0, 512), TempDir("out2"));
  EXPECT_EQ(header_only.code(), absl::StatusCode::kDataLoss) << header_only;
  auto mid_member = ExtractString(tar.substr(0, 1024), TempDir("out2"));
  EXPECT_EQ(mid_member.code(), absl::StatusCode::kDataLoss) << mid_member;
  EXPECT_TRUE(absl::StrContains(mid_member.message(), "'aaaaaaaaaa': truncated")) << mid_member;
  auto no_end = ExtractString(tar.substr(0, 512 + 2048), TempDir("out2"));
  EXPECT_EQ(no_end.code(), absl::StatusCode::kDataLoss) << no_end;
  for (const char* name : {"out1", "out2"}) fs::remove_all(TempDir(name));
}

TEST(Tar, RefusesLinksAndCorruptHeaders) {
  fs::path src = TempDir("links");
  RemoveAtExit cleanup{src};
  WriteFile(src / "x", "x");
  const std::string tar = TarToString(src);
  fs::path out = TempDir("links_out");
  RemoveAtExit cleanup_out{out};
  for (char type : {'1', '2', 'g', 'L'}) {
    std::string link = tar;
    link[156] = type;
    FixChecksum(&link, 0);
    auto st = ExtractString(link, out);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << type << ": " << st;
  }
  // A flipped byte that the checksum catches (the name would otherwise be extracted as "y").
  std::string corrupt = tar;
  corrupt[0] = 'y';
  auto st = ExtractString(corrupt, out);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "bad checksum")) << st;
  EXPECT_FALSE(fs::exists(out / "y"));
}

TEST(Tar, LongPathsTravelInAPaxRecordThatIsCheckedToo) {
  fs::path src = TempDir("long");
  RemoveAtExit cleanup{src};
  const std::string dir_name(60, 'd');
  const std::string file_name(80, 'f');
  const std::string rel = dir_name + "/" + file_name;  // 141 bytes: past ustar's 100
  WriteFile(src / dir_name / file_name, "long");
  WriteFile(src / "short", "short");
  const std::string tar = TarToString(src);
  const std::string record = absl::StrCat(" path=", rel, "\n");
  ASSERT_TRUE(absl::StrContains(tar, record));
  EXPECT_EQ(tar[156], 'x');
  fs::path out = TempDir("long_out");
  RemoveAtExit cleanup_out{out};
  ASSERT_TRUE(ExtractString(tar, out).ok());
  EXPECT_EQ(ReadFile(out / dir_name / file_name), "long");
  EXPECT_EQ(ReadFile(out / "short"), "short");
  if (HaveGnuTar()) {
    const fs::path file = src.string() + ".tar";
    RemoveAtExit cleanup_file{file};
    ASSERT_TRUE(WriteTarFile(src.string(), file.string()).ok());
    fs::path gnu = TempDir("long_gnu");
    RemoveAtExit cleanup_gnu{gnu};
    ASSERT_EQ(std::system(("tar -xf " + file.string() + " -C " + gnu.string()).c_str()), 0);
    EXPECT_EQ(ReadFile(gnu / dir_name / file_name), "long");
    EXPECT_FALSE(fs::exists(gnu / "PaxHeaders"));
  }
  // The path of a PAX record is held to the same rules as a ustar name.
  std::string evil = tar;
  const size_t at = evil.find(record);
  std::memcpy(evil.data() + at + 6, "../", 3);
  auto st = ExtractString(evil, TempDir("long_evil"));
  fs::remove_all(TempDir("long_evil"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "unsafe path")) << st;
  // A record whose length does not match is refused, not guessed at.
  evil = tar;
  evil[evil.find(record) - 1] = '9';
  st = ExtractString(evil, TempDir("long_evil"));
  fs::remove_all(TempDir("long_evil"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

TEST(Tar, AFileThatChangesWhileArchivedIsAnError) {
  fs::path src = TempDir("grow");
  RemoveAtExit cleanup{src};
  WriteFile(src / "weights", "abc");
  bool appended = false;
  absl::Status st = WriteTar(src.string(), [&](absl::string_view) {
    if (!appended) {
      appended = true;
      std::ofstream(src / "weights", std::ios::app) << "more";
    }
    return absl::OkStatus();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "weights: grew")) << st;
  // A sink error stops the archiving and is what it returns.
  int calls = 0;
  st = WriteTar(src.string(), [&](absl::string_view) {
    ++calls;
    return absl::UnavailableError("peer went away");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 1);
}

// A member past ustar's 8 GiB limit (a merged fp32 export of a ~2B-parameter model): a sparse file,
// so only the few marked ranges take disk space, here and in the archive and the extracted copy.
TEST(Tar, MembersOf8GiBAndMoreRoundTripThroughAPaxSizeRecord) {
  const uint64_t size = (uint64_t{1} << 33) + 4097;
  fs::path root = TempDir("big");
  RemoveAtExit cleanup{root};
  const fs::path src = root / "src";
  fs::create_directories(src);
  WriteFile(src / "config.json", "{}");
  const fs::path big = src / "model.safetensors";
  const std::vector<std::pair<uint64_t, std::string>> marks = {{0, "head"},
                                                               {(uint64_t{1} << 32) - 2, "4GiB"},
                                                               {(uint64_t{1} << 33) - 3, "at8GiB"},
                                                               {size - 4, "tail"}};
  {
    const int fd = ::open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    for (const auto& [at, text] : marks) {
      ASSERT_EQ(::pwrite(fd, text.data(), text.size(), static_cast<off_t>(at)),
                static_cast<ssize_t>(text.size()));
    }
    ::close(fd);
  }
  const fs::path archive = root / "model.tar";
  ASSERT_TRUE(WriteTarFile(src.string(), archive.string()).ok());
  // header + pax header + records, the data padded to a block, two end blocks
  EXPECT_EQ(fs::file_size(archive), 512 + 512 + 512 + 512 + (size + 511) / 512 * 512 + 512 + 1024);
  {
    std::ifstream in(archive, std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    EXPECT_TRUE(absl::StrContains(head, absl::StrCat(" size=", size, "\n")));
  }
  const fs::path out = root / "out";
  ASSERT_TRUE(ExtractTarFile(archive.string(), out.string()).ok());
  EXPECT_EQ(ReadFile(out / "config.json"), "{}");
  ASSERT_EQ(fs::file_size(out / "model.safetensors"), size);
  {
    const int fd = ::open((out / "model.safetensors").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    for (const auto& [at, text] : marks) {
      std::string got(text.size() + 2, '?');
      const uint64_t from = at == 0 ? 0 : at - 1;
      const size_t want = std::min<uint64_t>(got.size(), size - from);
      ASSERT_EQ(::pread(fd, got.data(), want, static_cast<off_t>(from)),
                static_cast<ssize_t>(want));
      got.resize(want);
      const std::string expected =
          at == 0
              ? text + std::string(2, '\0')
              : std::string(1, '\0') + text + (at + text.size() < size ? std::string(1, '\0') : "");
      EXPECT_EQ(got, expected) << "at byte " << at;
    }
    struct stat st;
    ASSERT_EQ(::fstat(fd, &st), 0);
    // Still sparse: the zeros were skipped over, not written.
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{64} << 20);
    ::close(fd);
  }
  if (HaveGnuTar()) {
    const std::string listing = RunCapture("TZ=UTC tar -tvf " + archive.string() + " 2>&1");
    EXPECT_TRUE(
        absl::StrContains(listing, absl::StrCat(size, " 1970-01-01 00:00 model.safetensors")))
        << listing;
    EXPECT_TRUE(absl::StrContains(listing, "config.json")) << listing;
    EXPECT_FALSE(absl::StrContains(listing, "PaxHeaders")) << listing;
  }
}

}  // namespace
}  // namespace peftd
