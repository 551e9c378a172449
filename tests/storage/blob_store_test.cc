#include "storage/blob_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/sha256.h"

namespace peftd::storage {
namespace {

namespace fs = std::filesystem;

fs::path Root(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_blobs_" + name + std::to_string(getpid()));
  fs::remove_all(p);
  return p;
}

TEST(BlobStore, PutGetAreContentAddressedAndIdempotent) {
  const fs::path root = Root("put");
  auto store = BlobStore::Open(root.string());
  ASSERT_TRUE(store.ok());
  auto sha = store->Put("hello");
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(*sha, Sha256Hex("hello"));
  EXPECT_EQ(*store->Put("hello"), *sha);
  EXPECT_EQ(*store->Get(*sha), "hello");
  EXPECT_EQ(store->Get(std::string(64, 'a')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Get("../etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fs::status(root).permissions() & fs::perms::all, fs::perms::owner_all);
}

TEST(BlobStore, ReadsVerifyTheHash) {
  const fs::path root = Root("corrupt");
  auto store = BlobStore::Open(root.string());
  const std::string sha = *store->Put("payload");
  std::ofstream(root / sha) << "tampered";
  EXPECT_EQ(store->Get(sha).status().code(), absl::StatusCode::kDataLoss);
}

TEST(BlobStore, AdoptChecksTheExpectedHashAndACrashLeavesNoHalfBlob) {
  const fs::path root = Root("adopt");
  auto store = BlobStore::Open(root.string());
  std::string tmp = store->TempPath();
  std::ofstream(tmp) << "streamed";
  EXPECT_EQ(store->Adopt(tmp, std::string(64, '0')).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(tmp));
  tmp = store->TempPath();
  std::ofstream(tmp) << "streamed";
  EXPECT_EQ(*store->Adopt(tmp, Sha256Hex("streamed")), Sha256Hex("streamed"));
  // A crash between the temp write and the rename: only a temp file, which reopening removes.
  const std::string orphan = store->TempPath();
  std::ofstream(orphan) << "half";
  auto reopened = BlobStore::Open(root.string());
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(reopened->Contains(Sha256Hex("half")));
  EXPECT_TRUE(reopened->Contains(Sha256Hex("streamed")));
}

TEST(BlobStore, SweepRemovesUnreferencedBlobsPastTheirGrace) {
  const fs::path root = Root("sweep");
  auto store = BlobStore::Open(root.string());
  const std::string keep = *store->Put("kept");
  const std::string old = *store->Put("old");
  const std::string fresh = *store->Put("fresh");
  const std::string temp = store->TempPath();
  std::ofstream(temp) << "an upload in flight";
  const auto an_hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (const std::string& sha : {keep, old}) fs::last_write_time(root / sha, an_hour_ago);

  auto swept = store->Sweep({keep}, absl::Minutes(10));
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(swept->removed, 1);
  EXPECT_EQ(swept->bytes, 3);
  EXPECT_EQ(swept->kept, 2);
  EXPECT_TRUE(store->Contains(keep));
  EXPECT_FALSE(store->Contains(old));
  EXPECT_TRUE(store->Contains(fresh));  // within its grace: its record may be on its way
  EXPECT_TRUE(fs::exists(temp));        // temp files are Open's business

  // Adopting bytes the store already has renews the grace of the existing blob.
  fs::last_write_time(root / fresh, an_hour_ago);
  const std::string again = store->TempPath();
  std::ofstream(again) << "fresh";
  ASSERT_TRUE(store->Adopt(again, fresh).ok());
  EXPECT_EQ(store->Sweep({keep}, absl::Minutes(10))->removed, 0);
  EXPECT_TRUE(store->Contains(fresh));
}

}  // namespace
}  // namespace peftd::storage
