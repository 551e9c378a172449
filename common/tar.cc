#include "common/tar.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
constexpr size_t kBlock = 512;
constexpr size_t kNameBytes = 100;
// ustar's size field holds 11 octal digits: 8 GiB - 1. Larger members need a PAX size record.
constexpr uint64_t kMaxUstarSize = (uint64_t{1} << 33) - 1;
// Our PAX headers hold a size and a path; a larger one is not ours (and not read into memory).
constexpr uint64_t kMaxPaxBytes = 64 << 10;

// Closes a file descriptor on every return path.
struct ScopedFd {
  explicit ScopedFd(int f) : fd(f) {}
  ~ScopedFd() {
    if (fd >= 0) ::close(fd);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int fd;
};

size_t Padding(uint64_t size) { return static_cast<size_t>((kBlock - size % kBlock) % kBlock); }

const std::string& Zeros() {
  static const std::string* zeros = new std::string(2 * kBlock, '\0');
  return *zeros;
}

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

// The header checksum: the sum of the header's bytes with the checksum field read as spaces.
unsigned Checksum(const char* h) {
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  }
  return sum;
}

// `name` is at most kNameBytes; `size` fits ustar (a caller with a larger one writes 0 here and
// the real size in a PAX record).
std::string Header(absl::string_view name, uint64_t size, char type) {
  std::string h(kBlock, '\0');
  char* b = h.data();
  std::memcpy(b, name.data(), std::min(name.size(), kNameBytes));
  WriteOctal(b + 100, 8, type == '5' ? 0755 : 0644);
  WriteOctal(b + 108, 8, 0);
  WriteOctal(b + 116, 8, 0);
  WriteOctal(b + 124, 12, size);
  WriteOctal(b + 136, 12, 0);
  b[156] = type;
  std::memcpy(b + 257, "ustar", 6);
  std::memcpy(b + 263, "00", 2);
  std::snprintf(b + 148, 8, "%06o", Checksum(b));
  b[155] = ' ';
  return h;
}

// One PAX record, "LEN key=value\n", where LEN counts the whole record, its own digits included.
std::string PaxRecord(absl::string_view key, absl::string_view value) {
  const size_t rest = 1 + key.size() + 1 + value.size() + 1;  // ' ' key '=' value '\n'
  size_t len = rest + 1;
  while (std::to_string(len).size() + rest != len) len = std::to_string(len).size() + rest;
  return absl::StrCat(len, " ", key, "=", value, "\n");
}

// The header (and, when needed, the PAX header before it) of a regular file of `size` bytes.
absl::Status WriteFileHeader(const std::string& rel, uint64_t size, const ByteSink& sink) {
  std::string pax;
  if (size > kMaxUstarSize) pax += PaxRecord("size", std::to_string(size));
  if (rel.size() > kNameBytes) pax += PaxRecord("path", rel);
  if (!pax.empty()) {
    // Named as GNU tar names its own, minus the pid (the same folder gives the same bytes).
    const std::string pax_name =
        ("PaxHeaders/" + fs::path(rel).filename().string()).substr(0, kNameBytes);
    RETURN_IF_ERROR(sink(Header(pax_name, pax.size(), 'x')));
    pax.append(Padding(pax.size()), '\0');
    RETURN_IF_ERROR(sink(pax));
  }
  return sink(Header(rel, size > kMaxUstarSize ? 0 : size, '0'));
}

// Streams `size` bytes of the open file `fd` into `sink`, then checks that the file ended there.
absl::Status WriteFileData(int fd, const std::string& rel, uint64_t size, std::vector<char>& buf,
                           const ByteSink& sink) {
  uint64_t left = size;
  while (left > 0) {
    const ssize_t n =
        ReadSparse(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return absl::InternalError(absl::StrCat("reading ", rel, ": ", std::strerror(errno)));
    if (n == 0) {
      return absl::AbortedError(absl::StrCat(rel, ": shrank while it was archived"));
    }
    RETURN_IF_ERROR(sink(absl::string_view(buf.data(), static_cast<size_t>(n))));
    left -= static_cast<uint64_t>(n);
  }
  char extra;
  if (::read(fd, &extra, 1) > 0) {
    return absl::AbortedError(absl::StrCat(rel, ": grew while it was archived"));
  }
  return sink(absl::string_view(Zeros().data(), Padding(size)));
}

// Reads an archive through a TarSource, counting bytes (for messages).
class ArchiveReader {
 public:
  explicit ArchiveReader(const TarSource& source) : source_(source) {}

  // Reads `size` bytes, fewer only where the archive ends.
  absl::StatusOr<size_t> Read(char* buf, size_t size) {
    size_t got = 0;
    while (got < size) {
      ASSIGN_OR_RETURN(size_t n, source_(buf + got, size - got));
      if (n == 0) break;
      got += n;
    }
    offset_ += got;
    return got;
  }

  // Reads exactly `size` bytes (into `buf` of at least min(size, buf.size()) at a time, handing
  // each piece to `sink`), or DataLoss naming `entry`.
  absl::Status Copy(uint64_t size, std::vector<char>& buf, const std::string& entry,
                    const ByteSink& sink) {
    uint64_t left = size;
    while (left > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      ASSIGN_OR_RETURN(size_t n, Read(buf.data(), want));
      if (n < want) {
        return absl::DataLossError(absl::StrCat("archive entry '", entry, "': truncated"));
      }
      RETURN_IF_ERROR(sink(absl::string_view(buf.data(), n)));
      left -= n;
    }
    return absl::OkStatus();
  }

  uint64_t offset() const { return offset_; }

 private:
  const TarSource& source_;
  uint64_t offset_ = 0;
};

absl::Status Discard(absl::string_view) { return absl::OkStatus(); }

struct PaxRecords {
  std::optional<uint64_t> size;
  std::optional<std::string> path;
};

// Parses "LEN key=value\n" records; keys other than size and path (mtime, uid...) are ignored.
absl::Status ParsePax(absl::string_view data, const std::string& entry, PaxRecords* out) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive entry '", entry, "': bad PAX header (", why, ")"));
  };
  while (!data.empty()) {
    const size_t space = data.find(' ');
    uint64_t len = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtoi(data.substr(0, space), &len) ||
        len <= space + 1 || len > data.size() || data[len - 1] != '\n') {
      return bad("a record's length does not match it");
    }
    const absl::string_view record = data.substr(space + 1, len - space - 2);
    const size_t eq = record.find('=');
    if (eq == absl::string_view::npos) return bad("a record without '='");
    const absl::string_view key = record.substr(0, eq);
    const absl::string_view value = record.substr(eq + 1);
    if (key == "size") {
      uint64_t size = 0;
      if (value.empty() || value.find_first_not_of("0123456789") != absl::string_view::npos ||
          !absl::SimpleAtoi(value, &size)) {
        return bad(absl::StrCat("size '", value, "'"));
      }
      out->size = size;
    } else if (key == "path") {
      if (value.empty() || value.find('\0') != absl::string_view::npos) return bad("empty path");
      out->path = std::string(value);
    }
    data.remove_prefix(len);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteTar(const std::string& dir, const ByteSink& sink) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a folder"));
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  std::vector<char> buf(kFileChunkBytes);
  for (const auto& f : files) {
    const std::string rel = fs::relative(f, dir).generic_string();
    ScopedFd file(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (file.fd < 0 || ::fstat(file.fd, &st) != 0) {
      return absl::InternalError(absl::StrCat("reading ", f.string(), ": ", std::strerror(errno)));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    RETURN_IF_ERROR(WriteFileHeader(rel, size, sink));
    RETURN_IF_ERROR(WriteFileData(file.fd, rel, size, buf, sink));
  }
  return sink(Zeros());
}

absl::Status WriteTarFile(const std::string& dir, const std::string& archive_path) {
  ASSIGN_OR_RETURN(ChunkedFileWriter out, ChunkedFileWriter::Create(archive_path));
  RETURN_IF_ERROR(WriteTar(dir, [&](absl::string_view bytes) { return out.Append(bytes); }));
  return out.Finish();
}

absl::Status ExtractTar(const TarSource& source, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  ArchiveReader reader(source);
  std::vector<char> buf(kFileChunkBytes);
  char h[kBlock];
  PaxRecords pax;
  while (true) {
    const uint64_t at = reader.offset();
    ASSIGN_OR_RETURN(size_t got, reader.Read(h, kBlock));
    if (got < kBlock) return absl::DataLossError("archive ends without its end-of-archive blocks");
    if (std::all_of(h, h + kBlock, [](char c) { return c == '\0'; })) {
      if (pax.size || pax.path) {
        return absl::DataLossError("archive ends after a PAX header, without its entry");
      }
      return absl::OkStatus();
    }
    if (ReadOctal(h + 148, 8) != Checksum(h)) {
      return absl::DataLossError(absl::StrCat("archive header at byte ", at,
                                              ": bad checksum (not a tar archive, or corrupt)"));
    }
    std::string name(h, strnlen(h, kNameBytes));
    const std::string prefix(h + 345, strnlen(h + 345, 155));
    if (!prefix.empty()) name = prefix + "/" + name;
    const char type = h[156];
    if (static_cast<unsigned char>(h[124]) & 0x80) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive entry '", name, "': base-256 sizes are not supported"));
    }
    uint64_t size = ReadOctal(h + 124, 12);
    if (type == 'x') {
      if (size > kMaxPaxBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("archive entry '", name, "': PAX header of ", size, " bytes"));
      }
      std::string records;
      RETURN_IF_ERROR(reader.Copy(size, buf, name, [&](absl::string_view bytes) {
        records.append(bytes.data(), bytes.size());
        return absl::OkStatus();
      }));
      RETURN_IF_ERROR(reader.Copy(Padding(size), buf, name, Discard));
      RETURN_IF_ERROR(ParsePax(records, name, &pax));
      continue;
    }
    if (pax.path) name = *pax.path;
    if (pax.size) size = *pax.size;
    pax = PaxRecords();
    const fs::path rel(name);
    bool bad = name.empty() || rel.is_absolute();
    for (const auto& part : rel) bad = bad || part == "..";
    if (bad) {
      return absl::InvalidArgumentError(absl::StrCat("archive entry '", name, "': unsafe path"));
    }
    if (type == '5') {
      fs::create_directories(fs::path(dir) / rel, ec);
      if (ec) return absl::InternalError(absl::StrCat("creating ", name, ": ", ec.message()));
      RETURN_IF_ERROR(reader.Copy(size + Padding(size), buf, name, Discard));
      continue;
    }
    if (type != '0' && type != '\0') {
      return absl::InvalidArgumentError(
          absl::StrCat("archive entry '", name, "': only regular files and folders are allowed"));
    }
    const fs::path target = fs::path(dir) / rel;
    fs::create_directories(target.parent_path(), ec);
    if (ec) return absl::InternalError(absl::StrCat("creating ", name, ": ", ec.message()));
    ASSIGN_OR_RETURN(ChunkedFileWriter out, ChunkedFileWriter::Create(target.string()));
    RETURN_IF_ERROR(
        reader.Copy(size, buf, name, [&](absl::string_view bytes) { return out.Append(bytes); }));
    RETURN_IF_ERROR(out.Finish());
    RETURN_IF_ERROR(reader.Copy(Padding(size), buf, name, Discard));
  }
}

absl::Status ExtractTarFile(const std::string& archive_path, const std::string& dir) {
  ScopedFd file(::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", archive_path, ": ", std::strerror(errno)));
  }
  return ExtractTar(
      [&](char* buf, size_t size) -> absl::StatusOr<size_t> {
        while (true) {
          const ssize_t n = ReadSparse(file.fd, buf, size);
          if (n >= 0) return static_cast<size_t>(n);
          if (errno != EINTR) {
            return absl::InternalError(
                absl::StrCat("reading ", archive_path, ": ", std::strerror(errno)));
          }
        }
      },
      dir);
}

}  // namespace peftd
