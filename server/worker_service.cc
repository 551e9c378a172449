#include "server/worker_service.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/status_grpc.h"
#include "server/auth.h"
#include "server/blob_streams.h"

namespace peftd::server {

#define PEFTD_AUTHORIZE(ctx)                                                          \
  do {                                                                                \
    if (absl::Status auth_ = Authorize(*(ctx), options_.worker_token); !auth_.ok()) { \
      return ToGrpcStatus(auth_);                                                     \
    }                                                                                 \
  } while (0)

namespace {

grpc::Status Stream(const storage::BlobStore& blobs, const std::string& sha256,
                    grpc::ServerWriter<v1::BlobChunk>* writer) {
  bool first = true;
  return ToGrpcStatus(StreamBlob(blobs, sha256, [&](absl::string_view data, int64_t total) {
    v1::BlobChunk chunk;
    chunk.set_data(std::string(data));
    if (first) chunk.set_total_size_bytes(total);
    first = false;
    return writer->Write(chunk);
  }));
}

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(Scheduler* scheduler, storage::BlobStore* blobs,
                                     ServiceOptions options)
    : scheduler_(scheduler), blobs_(blobs), options_(std::move(options)) {}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                                         v1::RegisterResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto r = scheduler_->Register(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req,
                                          v1::HeartbeatResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto r = scheduler_->Heartbeat(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FetchDataset(grpc::ServerContext* ctx,
                                             const v1::FetchDatasetRequest* req,
                                             grpc::ServerWriter<v1::BlobChunk>* writer) {
  PEFTD_AUTHORIZE(ctx);
  auto known = scheduler_->IsDataset(req->sha256());
  if (!known.ok()) return ToGrpcStatus(known.status());
  if (!*known) {
    return ToGrpcStatus(
        absl::NotFoundError(absl::StrCat("no dataset with sha256 ", req->sha256())));
  }
  return Stream(*blobs_, req->sha256(), writer);
}

grpc::Status WorkerServiceImpl::FetchCheckpoint(grpc::ServerContext* ctx,
                                                const v1::FetchCheckpointRequest* req,
                                                grpc::ServerWriter<v1::BlobChunk>* writer) {
  PEFTD_AUTHORIZE(ctx);
  if (auto st = scheduler_->CheckLease(req->job_id(), req->attempt()); !st.ok()) {
    return ToGrpcStatus(st);
  }
  auto cp = scheduler_->FindCheckpoint(req->job_id(), req->sha256());
  if (!cp.ok()) return ToGrpcStatus(cp.status());
  return Stream(*blobs_, cp->sha256(), writer);
}

absl::StatusOr<std::pair<v1::UploadBlobRequest::Header, std::string>> WorkerServiceImpl::Receive(
    grpc::ServerReader<v1::UploadBlobRequest>* reader) {
  v1::UploadBlobRequest msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    return absl::InvalidArgumentError("header: the first message must carry the header");
  }
  const v1::UploadBlobRequest::Header header = msg.header();
  // Fencing before any byte is stored: a stale attempt learns it at once.
  RETURN_IF_ERROR(scheduler_->CheckLease(header.job_id(), header.attempt()));
  if (header.sha256().empty()) return absl::InvalidArgumentError("header.sha256: required");
  if (header.size_bytes() < 0 || header.size_bytes() > options_.max_upload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("header.size_bytes: ", header.size_bytes(),
                                                     " is over the server's upload limit of ",
                                                     options_.max_upload_bytes, " bytes"));
  }
  BlobUpload upload(blobs_);
  while (reader->Read(&msg)) {
    if (msg.has_header()) return absl::InvalidArgumentError("header: sent twice");
    if (upload.size() + static_cast<int64_t>(msg.chunk().size()) > header.size_bytes()) {
      return absl::DataLossError(
          absl::StrCat("more bytes than the header's size_bytes (", header.size_bytes(), ")"));
    }
    RETURN_IF_ERROR(upload.Append(msg.chunk()));
  }
  ASSIGN_OR_RETURN(std::string sha, upload.Commit(header.size_bytes(), header.sha256()));
  return std::make_pair(header, sha);
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(grpc::ServerContext* ctx,
                                                 grpc::ServerReader<v1::UploadBlobRequest>* reader,
                                                 v1::UploadBlobResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto got = Receive(reader);
  if (!got.ok()) return ToGrpcStatus(got.status());
  const auto& [h, sha] = *got;
  if (auto st =
          scheduler_->RecordCheckpoint(h.job_id(), h.attempt(), h.step(), sha, h.size_bytes());
      !st.ok()) {
    return ToGrpcStatus(st);
  }
  resp->set_sha256(sha);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::UploadAdapter(grpc::ServerContext* ctx,
                                              grpc::ServerReader<v1::UploadBlobRequest>* reader,
                                              v1::UploadBlobResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto got = Receive(reader);
  if (!got.ok()) return ToGrpcStatus(got.status());
  const auto& [h, sha] = *got;
  if (auto st = scheduler_->RecordAdapter(h.job_id(), h.attempt(), h.merged(), sha, h.size_bytes(),
                                          h.step());
      !st.ok()) {
    return ToGrpcStatus(st);
  }
  resp->set_sha256(sha);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::CompleteJob(grpc::ServerContext* ctx,
                                            const v1::CompleteJobRequest* req,
                                            v1::CompleteJobResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  return ToGrpcStatus(scheduler_->CompleteJob(*req));
}

}  // namespace peftd::server
