#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace peftd::safetensors {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct DtypeEntry {
  Dtype dtype;
  const char* name;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {Dtype::kF64, "F64", 8},   {Dtype::kF32, "F32", 4}, {Dtype::kF16, "F16", 2},
    {Dtype::kBF16, "BF16", 2}, {Dtype::kI64, "I64", 8}, {Dtype::kI32, "I32", 4},
    {Dtype::kI16, "I16", 2},   {Dtype::kI8, "I8", 1},   {Dtype::kU8, "U8", 1},
    {Dtype::kBool, "BOOL", 1},
};

// numel × element size, refusing overflow.
absl::StatusOr<uint64_t> ByteSize(const std::vector<int64_t>& shape, Dtype dtype,
                                  const std::string& name) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': negative dimension"));
    if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': shape overflows"));
    }
    n *= static_cast<uint64_t>(d);
  }
  const uint64_t size = DtypeSize(dtype);
  if (n > UINT64_MAX / size)
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': shape overflows"));
  return n * size;
}

absl::StatusOr<TensorInfo> ParseTensorInfo(const std::string& name, const json& j) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", what));
  };
  if (!j.is_object()) return bad("entry is not an object");
  for (const auto& [key, value] : j.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return bad("unknown field '" + key + "'");
  }
  if (!j.contains("dtype") || !j["dtype"].is_string()) return bad("missing or non-string dtype");
  TensorInfo info;
  auto dtype = ParseDtype(j["dtype"].get<std::string>());
  if (!dtype.ok()) return bad(std::string(dtype.status().message()));
  info.dtype = *dtype;
  if (!j.contains("shape") || !j["shape"].is_array()) return bad("missing or non-array shape");
  for (const auto& d : j["shape"]) {
    if (!d.is_number_unsigned()) return bad("shape entries must be non-negative integers");
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) return bad("shape entry too large");
    info.shape.push_back(static_cast<int64_t>(v));
  }
  if (!j.contains("data_offsets") || !j["data_offsets"].is_array() ||
      j["data_offsets"].size() != 2 || !j["data_offsets"][0].is_number_unsigned() ||
      !j["data_offsets"][1].is_number_unsigned()) {
    return bad("data_offsets must be two non-negative integers");
  }
  info.begin = j["data_offsets"][0].get<uint64_t>();
  info.end = j["data_offsets"][1].get<uint64_t>();
  if (info.end < info.begin) return bad("data_offsets end before they begin");
  ASSIGN_OR_RETURN(uint64_t expected, ByteSize(info.shape, info.dtype, name));
  if (info.end - info.begin != expected) {
    return bad(absl::StrCat("holds ", info.end - info.begin, " bytes but shape [",
                            absl::StrJoin(info.shape, ", "), "] of ", DtypeName(info.dtype),
                            " needs ", expected));
  }
  return info;
}

}  // namespace

absl::StatusOr<Dtype> ParseDtype(absl::string_view name) {
  for (const auto& e : kDtypes) {
    if (name == e.name) return e.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

const char* DtypeName(Dtype dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

size_t DtypeSize(Dtype dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e.size;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<Header> ParseHeader(absl::string_view text, uint64_t data_size) {
  if (text.size() > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("header of ", text.size(), " bytes is over the ", kMaxHeaderBytes, " limit"));
  }
  // Reject duplicate keys: nlohmann keeps the last one silently.
  bool duplicate = false;
  std::vector<std::set<std::string>> seen;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (event == json::parse_event_t::key && !seen.empty()) {
      if (!seen.back().insert(parsed.get<std::string>()).second) duplicate = true;
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("header is not valid JSON");
  if (duplicate) return absl::InvalidArgumentError("header has a duplicate key");
  if (!j.is_object()) return absl::InvalidArgumentError("header is not a JSON object");
  Header header;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> range_names;
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return absl::InvalidArgumentError("__metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("__metadata__['", k, "'] is not a string"));
        }
        header.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(TensorInfo info, ParseTensorInfo(name, value));
    if (info.end > data_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
                       "] run past the data (", data_size, " bytes)"));
    }
    ranges.emplace_back(info.begin, info.end);
    range_names.push_back(name);
    header.tensors.emplace(name, std::move(info));
  }
  // The tensors must tile the data buffer exactly: no overlap, no hole, nothing after.
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t cursor = 0;
  for (size_t i : order) {
    if (ranges[i].first < cursor) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", range_names[i], "': data_offsets overlap another tensor"));
    }
    if (ranges[i].first > cursor) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", range_names[i], "': hole of ",
                                                     ranges[i].first - cursor, " bytes before it"));
    }
    cursor = ranges[i].second;
  }
  if (cursor != data_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("data has ", data_size - cursor, " bytes after the last tensor"));
  }
  return header;
}

struct File::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  std::string owned;  // FromBytes keeps its copy here
  ~Mapping() {
    if (addr) munmap(addr, size);
  }
};

File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

namespace {

absl::StatusOr<std::pair<Header, const uint8_t*>> Validate(const uint8_t* bytes, size_t size) {
  if (size < 8)
    return absl::InvalidArgumentError(
        absl::StrCat("file of ", size, " bytes has no header length"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("header length ", n, " is over the ", kMaxHeaderBytes, " byte limit"));
  }
  if (n > size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("header length ", n, " runs past the end of the file (", size, " bytes)"));
  }
  absl::string_view text(reinterpret_cast<const char*>(bytes + 8), n);
  ASSIGN_OR_RETURN(Header header, ParseHeader(text, size - 8 - n));
  return std::make_pair(std::move(header), bytes + 8 + n);
}

}  // namespace

absl::StatusOr<File> File::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat"));
  }
  File file;
  file.mapping_ = std::make_unique<Mapping>();
  file.mapping_->size = static_cast<size_t>(st.st_size);
  if (st.st_size > 0) {
    void* addr = mmap(nullptr, file.mapping_->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
    }
    file.mapping_->addr = addr;
  }
  ::close(fd);
  auto parsed = Validate(static_cast<const uint8_t*>(file.mapping_->addr), file.mapping_->size);
  if (!parsed.ok()) return Annotate(parsed.status(), path);
  file.header_ = std::move(parsed->first);
  file.data_ = parsed->second;
  return file;
}

absl::StatusOr<File> File::FromBytes(std::string bytes) {
  File file;
  file.mapping_ = std::make_unique<Mapping>();
  file.mapping_->owned = std::move(bytes);
  const auto* p = reinterpret_cast<const uint8_t*>(file.mapping_->owned.data());
  ASSIGN_OR_RETURN(auto parsed, Validate(p, file.mapping_->owned.size()));
  file.header_ = std::move(parsed.first);
  file.data_ = parsed.second;
  return file;
}

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  for (const auto& [name, info] : header_.tensors) out.push_back(name);
  return out;
}

absl::StatusOr<TensorView> File::Get(const std::string& name) const {
  auto it = header_.tensors.find(name);
  if (it == header_.tensors.end())
    return absl::NotFoundError(absl::StrCat("no tensor '", name, "'"));
  const TensorInfo& info = it->second;
  TensorView view;
  view.dtype = info.dtype;
  view.shape = info.shape;
  view.data = data_ + info.begin;
  view.size_bytes = info.end - info.begin;
  return view;
}

absl::StatusOr<std::string> Serialize(const std::map<std::string, TensorToWrite>& tensors,
                                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      return absl::InvalidArgumentError("'__metadata__' is not a tensor name");
    ASSIGN_OR_RETURN(uint64_t expected, ByteSize(t.shape, t.dtype, name));
    if (expected != t.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", t.size_bytes,
                                                     " bytes given, shape needs ", expected));
    }
    header[name] = {{"dtype", DtypeName(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& [name, t] : tensors) {
    out.append(static_cast<const char*>(t.data), t.size_bytes);
  }
  return out;
}

absl::Status Write(const std::string& path, const std::map<std::string, TensorToWrite>& tensors,
                   const std::map<std::string, std::string>& metadata) {
  ASSIGN_OR_RETURN(std::string bytes, Serialize(tensors, metadata));
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp")).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (w < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat(tmp, ": write failed: ", std::strerror(errno)));
    }
    written += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(tmp, ": fsync failed: ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": rename failed: ", std::strerror(errno)));
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardedFiles> ShardedFiles::OpenDir(const std::string& dir) {
  ShardedFiles out;
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    ASSIGN_OR_RETURN(File file, File::Open((root / "model.safetensors").string()));
    for (const auto& name : file.names()) out.index_[name] = 0;
    out.files_.push_back(std::move(file));
    return out;
  }
  std::ifstream in(index_path);
  std::stringstream ss;
  ss << in.rdbuf();
  json index = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  const std::string where = index_path.string();
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing weight_map"));
  }
  std::map<std::string, size_t> shard_of_file;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": weight_map['", tensor, "'] is not a string"));
    }
    const std::string shard_name = shard.get<std::string>();
    const fs::path rel(shard_name);
    bool escapes = rel.is_absolute() || shard_name.empty();
    for (const auto& part : rel) escapes = escapes || part == "..";
    if (escapes) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": shard '", shard_name, "' of tensor '", tensor, "' is outside ", dir));
    }
    auto it = shard_of_file.find(shard_name);
    if (it == shard_of_file.end()) {
      ASSIGN_OR_RETURN(File file, File::Open((root / rel).string()));
      it = shard_of_file.emplace(shard_name, out.files_.size()).first;
      out.files_.push_back(std::move(file));
    }
    if (!out.files_[it->second].contains(tensor)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor '", tensor, "' is not in its shard '", shard_name, "'"));
    }
    out.index_[tensor] = it->second;
  }
  return out;
}

std::vector<std::string> ShardedFiles::names() const {
  std::vector<std::string> out;
  for (const auto& [name, i] : index_) out.push_back(name);
  return out;
}

bool ShardedFiles::contains(const std::string& name) const { return index_.count(name) > 0; }

absl::StatusOr<TensorView> ShardedFiles::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return absl::NotFoundError(absl::StrCat("no tensor '", name, "'"));
  return files_[it->second].Get(name);
}

}  // namespace peftd::safetensors
