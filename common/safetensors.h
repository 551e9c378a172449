// safetensors reader and writer, independent of LibTorch (raw bytes + dtype + shape).
// Format (METHODS.md, "safetensors"): 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [b, e]}, "__metadata__": {str: str}}, then the data
// buffer. The reader refuses: a header over 100 MB, bad JSON, unknown dtypes, offsets that overlap,
// leave holes or run past the file, and byte sizes that do not match shape x dtype size.
// The LibTorch bridge (at::Tensor <-> TensorView) lives with the torch code, not here.
#ifndef PEFTD_COMMON_SAFETENSORS_H_
#define PEFTD_COMMON_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peftd::safetensors {

enum class Dtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32; InvalidArgument naming the string when unknown.
absl::StatusOr<Dtype> ParseDtype(absl::string_view name);
const char* DtypeName(Dtype dtype);
size_t DtypeSize(Dtype dtype);

// Largest header the reader accepts (METHODS.md): 100 MB.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// One tensor inside a file. `data` points into memory owned by the File it came from.
struct TensorView {
  Dtype dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t size_bytes = 0;
  int64_t numel() const;
};

// A parsed header: tensor name -> (dtype, shape, [begin, end) relative to the data buffer).
struct TensorInfo {
  Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};
struct Header {
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// Parses and validates the JSON header against a data buffer of `data_size` bytes. Never crashes
// on any input; this is the fuzz target's entry point.
absl::StatusOr<Header> ParseHeader(absl::string_view json, uint64_t data_size);

// A read-only, memory-mapped safetensors file. Movable, not copyable; views stay valid while the
// File lives. Thread-safe for concurrent reads.
class File {
 public:
  // Maps `path` and validates everything. Errors name the path and what is wrong.
  static absl::StatusOr<File> Open(const std::string& path);
  // Validates an in-memory image (a copy is kept).
  static absl::StatusOr<File> FromBytes(std::string bytes);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const Header& header() const { return header_; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Names in sorted order.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return header_.tensors.count(name) > 0; }
  // NotFound naming the tensor when absent.
  absl::StatusOr<TensorView> Get(const std::string& name) const;

 private:
  File() = default;
  struct Mapping;
  std::unique_ptr<Mapping> mapping_;
  Header header_;
  const uint8_t* data_ = nullptr;  // start of the data buffer inside the mapping
};

// A tensor to write; `data` must hold exactly numel x DtypeSize(dtype) bytes, little-endian.
struct TensorToWrite {
  Dtype dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t size_bytes = 0;
};

// Serializes tensors (sorted by name, contiguous, header padded with spaces to a multiple of 8).
absl::StatusOr<std::string> Serialize(const std::map<std::string, TensorToWrite>& tensors,
                                      const std::map<std::string, std::string>& metadata = {});

// Writes Serialize(...) to `path` atomically: temp file in the same folder, fsync, rename.
absl::Status Write(const std::string& path, const std::map<std::string, TensorToWrite>& tensors,
                   const std::map<std::string, std::string>& metadata = {});

// A model stored as one file or as shards listed in `model.safetensors.index.json`
// ({"metadata": {...}, "weight_map": {"tensor": "model-00001-of-00002.safetensors"}}).
class ShardedFiles {
 public:
  // `dir` holds model.safetensors or model.safetensors.index.json (the index wins when both exist).
  // Every shard named by the index is opened; a tensor listed in the index but missing from its
  // shard, or a shard outside `dir`, is an error naming both.
  static absl::StatusOr<ShardedFiles> OpenDir(const std::string& dir);
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  absl::StatusOr<TensorView> Get(const std::string& name) const;

 private:
  std::vector<File> files_;
  std::map<std::string, size_t> index_;  // tensor name -> files_ index
};

}  // namespace peftd::safetensors

#endif  // PEFTD_COMMON_SAFETENSORS_H_
