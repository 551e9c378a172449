// Blob bytes through gRPC streams: a stored blob read in chunks, and read errors reported.
#include "server/blob_streams.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/sha256.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("peftd_blob_streams_" + name + std::to_string(getpid()));
  fs::remove_all(p);
  return p;
}

TEST(StreamBlob, ReadsTheStoredFileInChunks) {
  const fs::path root = TempDir("chunks");
  auto blobs = storage::BlobStore::Open(root.string());
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  std::string bytes(kBlobChunkBytes * 2 + 123, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i % 251);
  auto sha = blobs->Put(bytes);
  ASSERT_TRUE(sha.ok());
  std::string got;
  int chunks = 0;
  absl::Status st = StreamBlob(*blobs, *sha, [&](absl::string_view data, int64_t total) {
    EXPECT_LE(data.size(), kBlobChunkBytes);
    EXPECT_EQ(total, static_cast<int64_t>(bytes.size()));
    got.append(data.data(), data.size());
    ++chunks;
    return true;
  });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(chunks, 3);
  EXPECT_TRUE(got == bytes);
  fs::remove_all(root);
}

// A read error on the server's disk must not look like a blob that ended early.
TEST(StreamBlob, AReadErrorIsReportedNotAShortBlob) {
  const fs::path root = TempDir("eisdir");
  auto blobs = storage::BlobStore::Open(root.string());
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  const std::string sha = Sha256Hex("the blob");
  fs::create_directories(blobs->PathOf(sha));  // opens, but every read fails (EISDIR)
  absl::Status st = StreamBlob(*blobs, sha, [](absl::string_view, int64_t) { return true; });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_NE(st.message().find("reading blob"), std::string::npos) << st;
  fs::remove_all(root);
}

}  // namespace
}  // namespace peftd::server
