// JobService (jobs.proto) over the Scheduler: the public API. Every RPC authorizes first, then
// translates between protos and the scheduler; absl errors become gRPC ones in ToGrpcStatus only.
#ifndef PEFTD_SERVER_JOB_SERVICE_H_
#define PEFTD_SERVER_JOB_SERVICE_H_

#include "peftd/v1/jobs.grpc.pb.h"
#include "server/scheduler.h"
#include "server/service_options.h"
#include "storage/blob_store.h"

namespace peftd::server {

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // `scheduler` and `blobs` must outlive the service.
  JobServiceImpl(Scheduler* scheduler, storage::BlobStore* blobs, ServiceOptions options);

  grpc::Status CreateJob(grpc::ServerContext* ctx, const v1::CreateJobRequest* req,
                         v1::Job* resp) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                      v1::Job* resp) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                         v1::Job* resp) override;
  // Ends OK after the event that made the job final; UNAVAILABLE when the server shuts down
  // (resume with the last event id received).
  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status ListJobEvents(grpc::ServerContext* ctx, const v1::ListJobEventsRequest* req,
                             v1::ListJobEventsResponse* resp) override;
  grpc::Status ListCheckpoints(grpc::ServerContext* ctx, const v1::ListCheckpointsRequest* req,
                               v1::ListCheckpointsResponse* resp) override;
  grpc::Status UploadDataset(grpc::ServerContext* ctx,
                             grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                             v1::Dataset* resp) override;
  grpc::Status ListDatasets(grpc::ServerContext* ctx, const v1::ListDatasetsRequest* req,
                            v1::ListDatasetsResponse* resp) override;
  grpc::Status ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                          v1::ListModelsResponse* resp) override;
  grpc::Status DownloadAdapter(grpc::ServerContext* ctx, const v1::DownloadAdapterRequest* req,
                               grpc::ServerWriter<v1::DownloadAdapterChunk>* writer) override;
  grpc::Status CreateSweep(grpc::ServerContext* ctx, const v1::CreateSweepRequest* req,
                           v1::Sweep* resp) override;
  grpc::Status GetSweep(grpc::ServerContext* ctx, const v1::GetSweepRequest* req,
                        v1::Sweep* resp) override;
  grpc::Status ListSweeps(grpc::ServerContext* ctx, const v1::ListSweepsRequest* req,
                          v1::ListSweepsResponse* resp) override;
  grpc::Status CancelSweep(grpc::ServerContext* ctx, const v1::CancelSweepRequest* req,
                           v1::Sweep* resp) override;

 private:
  absl::StatusOr<v1::Dataset> ReceiveDataset(grpc::ServerContext* ctx,
                                             grpc::ServerReader<v1::UploadDatasetRequest>* reader);

  Scheduler* scheduler_;
  storage::BlobStore* blobs_;
  ServiceOptions options_;
};

// Dataset ids: "ds-" + the first 16 hex digits of the sha256 of the bytes.
std::string DatasetIdOf(const std::string& sha256);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_JOB_SERVICE_H_
