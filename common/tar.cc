#include "common/tar.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
constexpr size_t kBlock = 512;

void WriteOctal(char* field, size_t width, uint64_t value) {
  // width includes the terminating NUL.
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

uint64_t ReadOctal(const char* field, size_t width) {
  uint64_t v = 0;
  for (size_t i = 0; i < width && field[i]; ++i) {
    if (field[i] == ' ') continue;
    if (field[i] < '0' || field[i] > '7') break;
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  return v;
}

std::string Header(const std::string& name, uint64_t size, char type) {
  std::string h(kBlock, '\0');
  char* b = h.data();
  std::memcpy(b, name.data(), name.size());  // caller checked <= 100, or uses the prefix field
  WriteOctal(b + 100, 8, type == '5' ? 0755 : 0644);
  WriteOctal(b + 108, 8, 0);
  WriteOctal(b + 116, 8, 0);
  WriteOctal(b + 124, 12, size);
  WriteOctal(b + 136, 12, 0);
  b[156] = type;
  std::memcpy(b + 257, "ustar", 6);
  std::memcpy(b + 263, "00", 2);
  std::memset(b + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(b[i]);
  std::snprintf(b + 148, 8, "%06o", sum);
  b[155] = ' ';
  return h;
}

}  // namespace

absl::StatusOr<std::string> TarDirectory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a folder"));
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  std::string out;
  for (const auto& f : files) {
    const std::string rel = fs::relative(f, dir).generic_string();
    if (rel.size() > 99)
      return absl::InvalidArgumentError(absl::StrCat(rel, ": path too long for tar"));
    std::ifstream in(f, std::ios::binary);
    std::ostringstream data;
    data << in.rdbuf();
    if (!in.good() && !in.eof()) return absl::InternalError(absl::StrCat("reading ", f.string()));
    const std::string bytes = data.str();
    out += Header(rel, bytes.size(), '0');
    out += bytes;
    out.append((kBlock - bytes.size() % kBlock) % kBlock, '\0');
  }
  out.append(2 * kBlock, '\0');
  return out;
}

absl::Status UntarToDirectory(const std::string& archive, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  size_t pos = 0;
  while (pos + kBlock <= archive.size()) {
    const char* h = archive.data() + pos;
    if (std::all_of(h, h + kBlock, [](char c) { return c == '\0'; })) return absl::OkStatus();
    std::string name(h, strnlen(h, 100));
    const std::string prefix(h + 345, strnlen(h + 345, 155));
    if (!prefix.empty()) name = prefix + "/" + name;
    const uint64_t size = ReadOctal(h + 124, 12);
    const char type = h[156];
    pos += kBlock;
    const fs::path rel(name);
    bool bad = name.empty() || rel.is_absolute();
    for (const auto& part : rel) bad = bad || part == "..";
    if (bad)
      return absl::InvalidArgumentError(absl::StrCat("archive entry '", name, "': unsafe path"));
    if (type == '5') {
      fs::create_directories(fs::path(dir) / rel, ec);
      continue;
    }
    if (type != '0' && type != '\0') {
      return absl::InvalidArgumentError(
          absl::StrCat("archive entry '", name, "': only regular files and folders are allowed"));
    }
    if (pos + size > archive.size()) {
      return absl::DataLossError(absl::StrCat("archive entry '", name, "': truncated"));
    }
    const fs::path target = fs::path(dir) / rel;
    fs::create_directories(target.parent_path(), ec);
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    out.write(archive.data() + pos, static_cast<std::streamsize>(size));
    if (!out) return absl::InternalError(absl::StrCat("writing ", target.string()));
    pos += (size + kBlock - 1) / kBlock * kBlock;
  }
  return absl::DataLossError("archive ends without its end-of-archive blocks");
}

}  // namespace peftd
