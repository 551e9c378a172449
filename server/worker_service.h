// WorkerService (worker.proto) over the Scheduler: how workers register, heartbeat, fetch inputs,
// upload checkpoints and adapters and report the end of an attempt. Uploads are fenced: the
// (job_id, attempt) of the header must be the job's current lease before any byte is stored.
#ifndef PEFTD_SERVER_WORKER_SERVICE_H_
#define PEFTD_SERVER_WORKER_SERVICE_H_

#include "peftd/v1/worker.grpc.pb.h"
#include "server/scheduler.h"
#include "server/service_options.h"
#include "storage/blob_store.h"

namespace peftd::server {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `scheduler` and `blobs` must outlive the service.
  WorkerServiceImpl(Scheduler* scheduler, storage::BlobStore* blobs, ServiceOptions options);

  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                        v1::RegisterResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override;
  grpc::Status FetchDataset(grpc::ServerContext* ctx, const v1::FetchDatasetRequest* req,
                            grpc::ServerWriter<v1::BlobChunk>* writer) override;
  grpc::Status FetchCheckpoint(grpc::ServerContext* ctx, const v1::FetchCheckpointRequest* req,
                               grpc::ServerWriter<v1::BlobChunk>* writer) override;
  grpc::Status UploadCheckpoint(grpc::ServerContext* ctx,
                                grpc::ServerReader<v1::UploadBlobRequest>* reader,
                                v1::UploadBlobResponse* resp) override;
  grpc::Status UploadAdapter(grpc::ServerContext* ctx,
                             grpc::ServerReader<v1::UploadBlobRequest>* reader,
                             v1::UploadBlobResponse* resp) override;
  grpc::Status CompleteJob(grpc::ServerContext* ctx, const v1::CompleteJobRequest* req,
                           v1::CompleteJobResponse* resp) override;

 private:
  // Reads header + bytes into the blob store; returns the header and the stored sha256.
  absl::StatusOr<std::pair<v1::UploadBlobRequest::Header, std::string>> Receive(
      grpc::ServerReader<v1::UploadBlobRequest>* reader);

  Scheduler* scheduler_;
  storage::BlobStore* blobs_;
  ServiceOptions options_;
};

}  // namespace peftd::server

#endif  // PEFTD_SERVER_WORKER_SERVICE_H_
