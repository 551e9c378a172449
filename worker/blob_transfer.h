// Blobs between a worker and the server over the WorkerService streams, never a whole blob in
// memory (a merged export can be many GB).
//
// A fetch streams into a temp file of its own (mkstemp beside the target, so concurrent fetches
// of one blob never share a file), checks every write, the fsync and the close, then re-reads the
// file as stored and gives it the target's name only if its size and sha256 are the blob's. A
// failed fetch leaves no file behind.
//
// An upload reads its bytes from disk twice: once to announce their size and sha256 in the
// header, once to send them, hashed again on the way so that bytes that changed in between are
// caught here rather than stored.
#ifndef PEFTD_WORKER_BLOB_TRANSFER_H_
#define PEFTD_WORKER_BLOB_TRANSFER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chunked_file.h"
#include "peftd/v1/worker.grpc.pb.h"

namespace peftd::worker {

// Opens the server stream of one blob (FetchDataset, FetchCheckpoint) on a prepared context.
using BlobReaderOpener = std::function<std::unique_ptr<grpc::ClientReaderInterface<v1::BlobChunk>>(
    grpc::ClientContext* ctx)>;

// Makes `path` hold the blob `sha256`: kept when it already does, fetched otherwise. `ctx` carries
// the deadline and credentials; `what` names the blob in errors ("fetching dataset 0123…: …").
absl::Status FetchBlob(const std::string& what, const std::string& sha256, const std::string& path,
                       grpc::ClientContext* ctx, const BlobReaderOpener& open);

// Produces the bytes of an upload into a sink: the same bytes at every call.
using BlobProducer = std::function<absl::Status(const ByteSink& sink)>;
// A file, read in chunks.
BlobProducer FileBlob(std::string path);
// The tar archive of a folder (common/tar.h), made on the fly: no archive file is written.
BlobProducer ArchiveBlob(std::string dir);

struct BlobDigest {
  int64_t size_bytes = 0;
  std::string sha256;
};
// One pass over the bytes.
absl::StatusOr<BlobDigest> DigestOf(const BlobProducer& produce);

// Opens an upload stream (UploadCheckpoint, UploadAdapter) on a prepared context.
using BlobWriterOpener =
    std::function<std::unique_ptr<grpc::ClientWriterInterface<v1::UploadBlobRequest>>(
        grpc::ClientContext* ctx, v1::UploadBlobResponse* response)>;

// One upload attempt: `header` with its size and sha256 set from `digest`, then the bytes of
// `produce` in messages of up to kFileChunkBytes. An error this worker made (a file it could not
// read, bytes that no longer match `digest`) cancels the stream and is returned with
// `*server_error` false; otherwise the error is the server's answer, with `*server_error` true.
absl::Status UploadBlob(v1::UploadBlobRequest::Header header, const BlobDigest& digest,
                        const BlobProducer& produce, grpc::ClientContext* ctx,
                        const BlobWriterOpener& open, bool* server_error);

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_BLOB_TRANSFER_H_
