// The safetensors reader and writer: every validation rule of METHODS.md with a crafted bad file,
// bit-exact round trips, out-of-order offsets, metadata, padding, shards and the public fixtures.
#include "common/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "nlohmann/json.hpp"

namespace peftd::safetensors {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string LengthPrefixed(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string ErrorOf(const std::string& bytes) {
  auto f = File::FromBytes(bytes);
  EXPECT_FALSE(f.ok()) << "accepted a bad file";
  return f.ok() ? "" : std::string(f.status().message());
}

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_st_" + name + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SafetensorsRead, RefusesAHeaderOverTheLimit) {
  std::string bytes(8, '\0');
  uint64_t n = kMaxHeaderBytes + 1;
  std::memcpy(bytes.data(), &n, 8);
  EXPECT_NE(ErrorOf(bytes).find("over the"), std::string::npos);
  EXPECT_NE(ParseHeader(std::string(kMaxHeaderBytes + 1, ' '), 0).status().message().find("limit"),
            std::string::npos);
}

TEST(SafetensorsRead, RefusesAHeaderLengthPastTheFile) {
  std::string bytes = LengthPrefixed("{}", "");
  bytes[0] = 50;
  EXPECT_NE(ErrorOf(bytes).find("runs past the end"), std::string::npos);
  EXPECT_NE(ErrorOf("abc").find("no header length"), std::string::npos);
}

TEST(SafetensorsRead, RefusesBadJson) {
  EXPECT_NE(ErrorOf(LengthPrefixed("{\"a\": ", "")).find("not valid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf(LengthPrefixed("[1, 2]", "")).find("not a JSON object"), std::string::npos);
  EXPECT_NE(
      ErrorOf(
          LengthPrefixed(
              R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
              "x"))
          .find("duplicate"),
      std::string::npos);
}

TEST(SafetensorsRead, RefusesAnUnknownDtype) {
  EXPECT_NE(ErrorOf(LengthPrefixed(R"({"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", "x"))
                .find("unknown dtype 'F8'"),
            std::string::npos);
}

TEST(SafetensorsRead, RefusesASizeThatDoesNotMatchTheShape) {
  std::string msg = ErrorOf(LengthPrefixed(
      R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", std::string(12, 0)));
  EXPECT_NE(msg.find("tensor 'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs 16"), std::string::npos) << msg;
}

TEST(SafetensorsRead, RefusesOverlappingOffsets) {
  std::string msg = ErrorOf(LengthPrefixed(
      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
      std::string(6, 0)));
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
}

TEST(SafetensorsRead, RefusesHoles) {
  std::string msg = ErrorOf(LengthPrefixed(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
      std::string(6, 0)));
  EXPECT_NE(msg.find("hole of 2 bytes"), std::string::npos) << msg;
  msg = ErrorOf(LengthPrefixed(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                               std::string(5, 0)));
  EXPECT_NE(msg.find("3 bytes after the last tensor"), std::string::npos) << msg;
}

TEST(SafetensorsRead, RefusesOffsetsPastTheFile) {
  std::string msg = ErrorOf(LengthPrefixed(
      R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", std::string(4, 0)));
  EXPECT_NE(msg.find("run past the data"), std::string::npos) << msg;
}

TEST(SafetensorsRead, RefusesMalformedEntries) {
  const char* bad[] = {
      R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})",
      R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})",
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})",
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}})",
      R"({"a":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})",
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}})",
      R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,1]}})",
      R"({"a":"x"})",
      R"({"__metadata__":{"k":1}})",
  };
  for (const char* h : bad) EXPECT_FALSE(File::FromBytes(LengthPrefixed(h, "x")).ok()) << h;
}

TEST(SafetensorsRead, RefusesATruncatedFile) {
  std::map<std::string, TensorToWrite> t;
  std::vector<float> v(16, 1.0f);
  t["w"] = {Dtype::kF32, {4, 4}, v.data(), v.size() * 4};
  std::string bytes = *Serialize(t);
  EXPECT_NE(ErrorOf(bytes.substr(0, bytes.size() - 1)).find("run past the data"),
            std::string::npos);
}

TEST(SafetensorsRead, TensorsWrittenOutOfOffsetOrderStillRead) {
  // "a" sorts first but its bytes come last.
  const std::string data = std::string("\x01\x02\x03\x04", 4) + std::string("\x09", 1);
  auto f = File::FromBytes(LengthPrefixed(
      R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[1],"data_offsets":[4,5]}})",
      data));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Get("a")->data[0], 9);
  EXPECT_EQ(f->Get("b")->data[3], 4);
  EXPECT_EQ(f->names(), (std::vector<std::string>{"a", "b"}));
}

TEST(SafetensorsWrite, EveryDtypeRoundTripsBitExactWithMetadata) {
  std::mt19937 rng(7);
  std::map<std::string, std::string> bytes;
  std::map<std::string, TensorToWrite> tensors;
  const std::pair<Dtype, const char*> kinds[] = {
      {Dtype::kF64, "f64"}, {Dtype::kF32, "f32"},  {Dtype::kF16, "f16"}, {Dtype::kBF16, "bf16"},
      {Dtype::kI64, "i64"}, {Dtype::kI32, "i32"},  {Dtype::kI16, "i16"}, {Dtype::kI8, "i8"},
      {Dtype::kU8, "u8"},   {Dtype::kBool, "bool"}};
  for (const auto& [dtype, name] : kinds) {
    std::string b(3 * 5 * DtypeSize(dtype), '\0');
    for (auto& c : b) c = static_cast<char>(rng() & (dtype == Dtype::kBool ? 1 : 0xff));
    bytes[name] = b;
  }
  for (const auto& [dtype, name] : kinds) {
    tensors[name] = {dtype, {3, 5}, bytes[name].data(), bytes[name].size()};
  }
  std::vector<float> scalar = {3.5f};
  tensors["scalar"] = {Dtype::kF32, {}, scalar.data(), 4};
  tensors["empty"] = {Dtype::kF32, {0, 4}, nullptr, 0};
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "ünïcode"}};
  fs::path dir = TempDir("roundtrip");
  const std::string path = (dir / "t.safetensors").string();
  ASSERT_TRUE(Write(path, tensors, meta).ok());
  auto f = File::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata(), meta);
  for (const auto& [dtype, name] : kinds) {
    auto v = f->Get(name);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->dtype, dtype);
    EXPECT_EQ(v->shape, (std::vector<int64_t>{3, 5}));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v->data), v->size_bytes), bytes[name])
        << name;
  }
  EXPECT_EQ(f->Get("scalar")->numel(), 1);
  EXPECT_EQ(f->Get("empty")->size_bytes, 0u);
  EXPECT_FALSE(fs::exists(dir / ".t.safetensors.tmp"));
  // Header padded with spaces to a multiple of 8, data right after.
  const std::string raw = ReadFile(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw[8 + n - 1] == ' ' || raw[8 + n - 1] == '}', true);
  EXPECT_EQ(*Serialize(tensors, meta), raw);
}

TEST(SafetensorsWrite, RefusesAMismatchedSize) {
  std::vector<float> v(3);
  std::map<std::string, TensorToWrite> t = {{"w", {Dtype::kF32, {2, 2}, v.data(), 12}}};
  EXPECT_NE(Serialize(t).status().message().find("tensor 'w'"), std::string::npos);
}

TEST(SafetensorsFixtures, PublicFilesReadWithTheirExpectedValues) {
  const fs::path root = fs::path(PEFTD_FIXTURES_DIR) / "safetensors-basic";
  json expected = json::parse(ReadFile(root / "expected.json"));
  ASSERT_EQ(expected.size(), 4u);
  for (const auto& [file, e] : expected.items()) {
    auto f = File::Open((root / file).string());
    ASSERT_TRUE(f.ok()) << file << ": " << f.status();
    auto v = f->Get(e["tensor"].get<std::string>());
    ASSERT_TRUE(v.ok());
    EXPECT_STREQ(DtypeName(v->dtype), e["dtype"].get<std::string>().c_str());
    EXPECT_EQ(v->shape, e["shape"].get<std::vector<int64_t>>());
    std::vector<double> got;
    for (int64_t i = 0; i < v->numel(); ++i) {
      switch (v->dtype) {
        case Dtype::kI32:
          got.push_back(reinterpret_cast<const int32_t*>(v->data)[i]);
          break;
        case Dtype::kF32:
          got.push_back(reinterpret_cast<const float*>(v->data)[i]);
          break;
        case Dtype::kF64:
          got.push_back(reinterpret_cast<const double*>(v->data)[i]);
          break;
        default:
          FAIL() << "unexpected dtype";
      }
    }
    std::vector<double> row_major;
    std::function<void(const json&)> walk = [&](const json& j) {
      if (j.is_array()) {
        for (const auto& x : j) walk(x);
      } else {
        row_major.push_back(j.get<double>());
      }
    };
    walk(e["values"]);
    EXPECT_EQ(got, row_major) << file;
    std::ifstream in(root / file, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    EXPECT_EQ(n, e["header_len"].get<uint64_t>());
  }
}

class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("sharded");
    a_ = {1.0f, 2.0f};
    b_ = {3.0f};
    ASSERT_TRUE(Write((dir_ / "model-00001-of-00002.safetensors").string(),
                      {{"a", {Dtype::kF32, {2}, a_.data(), 8}}})
                    .ok());
    ASSERT_TRUE(Write((dir_ / "model-00002-of-00002.safetensors").string(),
                      {{"b", {Dtype::kF32, {1}, b_.data(), 4}}})
                    .ok());
  }
  void WriteIndex(const json& weight_map) {
    std::ofstream(dir_ / "model.safetensors.index.json")
        << json{{"metadata", {{"total_size", 12}}}, {"weight_map", weight_map}}.dump();
  }
  fs::path dir_;
  std::vector<float> a_, b_;
};

TEST_F(ShardedTest, ResolvesTensorsThroughTheIndex) {
  WriteIndex(
      {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}});
  auto s = ShardedFiles::OpenDir(dir_.string());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(reinterpret_cast<const float*>(s->Get("b")->data)[0], 3.0f);
  EXPECT_FALSE(s->Get("c").ok());
}

TEST_F(ShardedTest, NamesATensorMissingFromItsShard) {
  WriteIndex({{"a", "model-00002-of-00002.safetensors"}});
  auto s = ShardedFiles::OpenDir(dir_.string());
  EXPECT_NE(s.status().message().find("tensor 'a' is not in its shard"), std::string::npos)
      << s.status();
}

TEST_F(ShardedTest, NamesAMissingShard) {
  WriteIndex({{"a", "model-00009.safetensors"}});
  auto s = ShardedFiles::OpenDir(dir_.string());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.status().message().find("model-00009.safetensors"), std::string::npos);
}

TEST_F(ShardedTest, RefusesShardsOutsideTheFolder) {
  WriteIndex({{"a", "../elsewhere.safetensors"}});
  EXPECT_NE(ShardedFiles::OpenDir(dir_.string()).status().message().find("outside"),
            std::string::npos);
  WriteIndex({{"a", "/etc/passwd"}});
  EXPECT_NE(ShardedFiles::OpenDir(dir_.string()).status().message().find("outside"),
            std::string::npos);
}

TEST_F(ShardedTest, SingleFileWithoutAnIndex) {
  fs::path single = TempDir("single");
  ASSERT_TRUE(
      Write((single / "model.safetensors").string(), {{"a", {Dtype::kF32, {2}, a_.data(), 8}}})
          .ok());
  auto s = ShardedFiles::OpenDir(single.string());
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->contains("a"));
}

}  // namespace
}  // namespace peftd::safetensors
