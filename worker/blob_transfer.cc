#include "worker/blob_transfer.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/status_grpc.h"
#include "common/tar.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;

// Removes a temp file unless it was renamed into place.
struct TempFile {
  std::string path;
  bool kept = false;
  ~TempFile() {
    std::error_code ec;
    if (!kept && !path.empty()) fs::remove(path, ec);
  }
};

absl::Status FetchInto(ChunkedFileWriter& out, const std::string& sha256, grpc::ClientContext* ctx,
                       const BlobReaderOpener& open) {
  auto reader = open(ctx);
  v1::BlobChunk chunk;
  int64_t announced = -1;
  absl::Status written;
  while (reader->Read(&chunk)) {
    if (announced < 0 && chunk.total_size_bytes() > 0) announced = chunk.total_size_bytes();
    written = out.Append(chunk.data());
    if (!written.ok()) {
      ctx->TryCancel();
      break;
    }
  }
  grpc::Status received = reader->Finish();
  RETURN_IF_ERROR(written);
  if (!received.ok()) return FromGrpcStatus(received);
  RETURN_IF_ERROR(out.Finish());
  // The file as stored, not the bytes as received: what the disk lost shows here.
  std::error_code ec;
  const int64_t stored = static_cast<int64_t>(fs::file_size(out.path(), ec));
  if (ec || stored != out.size() || (announced >= 0 && stored != announced)) {
    return absl::DataLossError(absl::StrCat("stored ", ec ? 0 : stored, " bytes of the ",
                                            announced >= 0 ? announced : out.size(),
                                            " the server sent"));
  }
  ASSIGN_OR_RETURN(const std::string have, Sha256HexOfFile(out.path()));
  if (have != sha256) {
    return absl::DataLossError(
        absl::StrCat("the stored file has sha256 ", have, ", not the blob's ", sha256));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FetchBlob(const std::string& what, const std::string& sha256, const std::string& path,
                       grpc::ClientContext* ctx, const BlobReaderOpener& open) {
  std::error_code ec;
  if (fs::exists(path, ec)) {
    auto have = Sha256HexOfFile(path);
    if (have.ok() && *have == sha256) return absl::OkStatus();
  }
  const std::string context = absl::StrCat("fetching ", what);
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) {
    return absl::InternalError(absl::StrCat(
        context, ": creating ", fs::path(path).parent_path().string(), ": ", ec.message()));
  }
  auto out = ChunkedFileWriter::CreateUnique(path + ".part-XXXXXX");
  if (!out.ok()) return Annotate(out.status(), context);
  TempFile temp{out->path()};
  RETURN_IF_ERROR(Annotate(FetchInto(*out, sha256, ctx, open), context));
  // Atomic: a concurrent fetch of the same blob renames an identical file over it.
  fs::rename(temp.path, path, ec);
  if (ec) return absl::InternalError(absl::StrCat(context, ": storing ", path, ": ", ec.message()));
  temp.kept = true;
  return absl::OkStatus();
}

BlobProducer FileBlob(std::string path) {
  return [path = std::move(path)](const ByteSink& sink) { return ReadFileChunks(path, sink); };
}

BlobProducer ArchiveBlob(std::string dir) {
  return [dir = std::move(dir)](const ByteSink& sink) { return WriteTar(dir, sink); };
}

absl::StatusOr<BlobDigest> DigestOf(const BlobProducer& produce) {
  Sha256 hash;
  BlobDigest digest;
  RETURN_IF_ERROR(produce([&](absl::string_view bytes) {
    hash.Update(bytes);
    digest.size_bytes += static_cast<int64_t>(bytes.size());
    return absl::OkStatus();
  }));
  digest.sha256 = hash.HexDigest();
  return digest;
}

absl::Status UploadBlob(v1::UploadBlobRequest::Header header, const BlobDigest& digest,
                        const BlobProducer& produce, grpc::ClientContext* ctx,
                        const BlobWriterOpener& open, bool* server_error) {
  *server_error = false;
  v1::UploadBlobResponse response;
  auto writer = open(ctx, &response);
  header.set_size_bytes(digest.size_bytes);
  header.set_sha256(digest.sha256);
  v1::UploadBlobRequest message;
  *message.mutable_header() = std::move(header);
  bool stream_ok = writer->Write(message);
  // Messages of up to kFileChunkBytes, whatever the sizes of the pieces produced (tar headers are
  // 512 bytes).
  std::string pending;
  Sha256 hash;
  int64_t sent = 0;
  auto flush = [&]() {
    v1::UploadBlobRequest chunk;
    chunk.set_chunk(std::move(pending));
    pending.clear();
    stream_ok = writer->Write(chunk);
  };
  absl::Status produced = produce([&](absl::string_view bytes) -> absl::Status {
    hash.Update(bytes);
    sent += static_cast<int64_t>(bytes.size());
    while (!bytes.empty() && stream_ok) {
      const size_t take = std::min(bytes.size(), kFileChunkBytes - pending.size());
      pending.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (pending.size() == kFileChunkBytes) flush();
    }
    // A broken stream: the server's status (Finish) says why.
    return stream_ok ? absl::OkStatus() : absl::CancelledError("the upload stream broke");
  });
  if (produced.ok() && stream_ok && !pending.empty()) flush();
  if (produced.ok() && (sent != digest.size_bytes || hash.HexDigest() != digest.sha256)) {
    produced = absl::AbortedError(
        "the bytes changed between hashing and sending them (was the file rewritten?)");
  }
  if (!produced.ok() && stream_ok) {
    // Our own error: the server must not store what was sent so far.
    ctx->TryCancel();
    writer->Finish();
    return produced;
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (st.ok()) return absl::OkStatus();
  *server_error = true;
  return FromGrpcStatus(st);
}

}  // namespace peftd::worker
