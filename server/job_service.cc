#include "server/job_service.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/status.h"
#include "common/status_grpc.h"
#include "google/protobuf/util/time_util.h"
#include "server/auth.h"
#include "server/blob_streams.h"
#include "server/dataset_upload.h"
#include "server/field_violation.h"
#include "server/job_state.h"
#include "server/model_root.h"

namespace peftd::server {
namespace {

constexpr int kWatchBatch = 100;

// A refused sweep with the field it names: a child's refusal "children[2] (lora.r=0): lora.r:
// must be >= 1" names "children[2].lora.r", described by "must be >= 1"; the sweep's own
// ("spec.axes[1].values[0]: ...") its prefix.
absl::Status WithSweepFieldViolation(const absl::Status& st) {
  const std::string message(st.message());
  const size_t close = message.find("): ");
  if (message.rfind("children[", 0) != 0 || close == std::string::npos) {
    return WithFieldViolation(st);
  }
  const std::string child = message.substr(0, message.find(' '));
  const std::string rest = message.substr(close + 3);
  const size_t colon = rest.find(": ");
  if (colon == std::string::npos || rest.substr(0, colon).find(' ') != std::string::npos) {
    return WithFieldViolation(st, child, rest);
  }
  return WithFieldViolation(st, child + "." + rest.substr(0, colon), rest.substr(colon + 2));
}

}  // namespace

#define PEFTD_AUTHORIZE(ctx)                                                        \
  do {                                                                              \
    if (absl::Status auth_ = Authorize(*(ctx), options_.auth_token); !auth_.ok()) { \
      return ToGrpcStatus(auth_);                                                   \
    }                                                                               \
  } while (0)

std::string DatasetIdOf(const std::string& sha256) { return "ds-" + sha256.substr(0, 16); }

JobServiceImpl::JobServiceImpl(Scheduler* scheduler, storage::BlobStore* blobs,
                               ServiceOptions options)
    : scheduler_(scheduler), blobs_(blobs), options_(std::move(options)) {}

grpc::Status JobServiceImpl::CreateJob(grpc::ServerContext* ctx, const v1::CreateJobRequest* req,
                                       v1::Job* resp) {
  PEFTD_AUTHORIZE(ctx);
  bool existed = false;
  auto job = scheduler_->CreateJob(*req, &existed);
  if (!job.ok()) return ToGrpcStatus(WithFieldViolation(job.status()));
  // The reply is the Job either way; clients that care (peftctl) read this to say so.
  if (existed) ctx->AddInitialMetadata(kExistingJobMetadata, "true");
  *resp = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CreateSweep(grpc::ServerContext* ctx,
                                         const v1::CreateSweepRequest* req, v1::Sweep* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto sweep = scheduler_->CreateSweep(*req);
  if (!sweep.ok()) return ToGrpcStatus(WithSweepFieldViolation(sweep.status()));
  *resp = std::move(*sweep);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetSweep(grpc::ServerContext* ctx, const v1::GetSweepRequest* req,
                                      v1::Sweep* resp) {
  PEFTD_AUTHORIZE(ctx);
  if (req->sweep_id().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("sweep_id: required"));
  }
  auto sweep = scheduler_->GetSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  *resp = std::move(*sweep);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListSweeps(grpc::ServerContext* ctx, const v1::ListSweepsRequest* req,
                                        v1::ListSweepsResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto page = scheduler_->ListSweeps(*req);
  if (!page.ok()) return ToGrpcStatus(page.status());
  *resp = std::move(*page);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelSweep(grpc::ServerContext* ctx,
                                         const v1::CancelSweepRequest* req, v1::Sweep* resp) {
  PEFTD_AUTHORIZE(ctx);
  if (req->sweep_id().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("sweep_id: required"));
  }
  auto sweep = scheduler_->CancelSweep(req->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  *resp = std::move(*sweep);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                                    v1::Job* resp) {
  PEFTD_AUTHORIZE(ctx);
  if (req->job_id().empty()) return ToGrpcStatus(absl::InvalidArgumentError("job_id: required"));
  auto job = scheduler_->GetJob(req->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *resp = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                                      v1::ListJobsResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto page = scheduler_->ListJobs(*req);
  if (!page.ok()) return ToGrpcStatus(page.status());
  *resp = std::move(*page);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                                       v1::Job* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto job = scheduler_->CancelJob(req->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *resp = std::move(*job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  PEFTD_AUTHORIZE(ctx);
  int64_t after = req->after_event_id();
  if (auto job = scheduler_->GetJob(req->job_id()); !job.ok()) return ToGrpcStatus(job.status());
  while (true) {
    auto events = scheduler_->ListJobEvents(req->job_id(), after, kWatchBatch);
    if (!events.ok()) return ToGrpcStatus(events.status());
    for (const auto& e : *events) {
      if (!writer->Write(e)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      after = e.id();
    }
    if (!events->empty()) continue;  // drain before deciding the job is over
    auto job = scheduler_->GetJob(req->job_id());
    if (!job.ok()) return ToGrpcStatus(job.status());
    if (IsFinal(job->state())) return grpc::Status::OK;
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    if (scheduler_->shutting_down()) {
      return ToGrpcStatus(absl::UnavailableError(
          absl::StrCat("the server is shutting down; watch again with after_event_id=", after)));
    }
    scheduler_->WaitForEvents(req->job_id(), after, options_.watch_poll);
  }
}

grpc::Status JobServiceImpl::ListJobEvents(grpc::ServerContext* ctx,
                                           const v1::ListJobEventsRequest* req,
                                           v1::ListJobEventsResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto events = scheduler_->ListJobEvents(req->job_id(), req->after_event_id(), req->page_size());
  if (!events.ok()) return ToGrpcStatus(events.status());
  for (auto& e : *events) *resp->add_events() = std::move(e);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListCheckpoints(grpc::ServerContext* ctx,
                                             const v1::ListCheckpointsRequest* req,
                                             v1::ListCheckpointsResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto cps = scheduler_->ListCheckpoints(req->job_id());
  if (!cps.ok()) return ToGrpcStatus(cps.status());
  for (auto& c : *cps) *resp->add_checkpoints() = std::move(c);
  return grpc::Status::OK;
}

absl::StatusOr<v1::Dataset> JobServiceImpl::ReceiveDataset(
    grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadDatasetRequest>* reader) {
  v1::UploadDatasetRequest msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    return absl::InvalidArgumentError(
        "header: the first message of UploadDataset must carry the header (filename, size, "
        "sha256)");
  }
  const v1::UploadDatasetRequest::Header header = msg.header();
  if (header.size_bytes() > options_.max_dataset_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "header.size_bytes: ", header.size_bytes(), " bytes is over the server's dataset limit of ",
        options_.max_dataset_bytes, " bytes (peftd --max-dataset-bytes)"));
  }
  BlobUpload upload(blobs_);
  DatasetUploadValidator validator;
  while (reader->Read(&msg)) {
    if (msg.has_header()) {
      return absl::InvalidArgumentError("header: sent twice; only the first message carries it");
    }
    if (upload.size() + static_cast<int64_t>(msg.chunk().size()) > options_.max_dataset_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the dataset is over the server's limit of ", options_.max_dataset_bytes,
                       " bytes (peftd --max-dataset-bytes); split it or raise the limit"));
    }
    RETURN_IF_ERROR(upload.Append(msg.chunk()));
    validator.Feed(msg.chunk());
  }
  if (ctx->IsCancelled()) return absl::CancelledError("the client went away");
  validator.Finish();
  RETURN_IF_ERROR(validator.ToStatus(header.filename(), header.allow_bad_lines()));
  ASSIGN_OR_RETURN(
      std::string sha,
      upload.Commit(header.size_bytes() > 0 ? header.size_bytes() : -1, header.sha256()));
  v1::Dataset ds;
  ds.set_id(DatasetIdOf(sha));
  ds.set_sha256(sha);
  ds.set_size_bytes(upload.size());
  ds.set_lines(validator.lines());
  ds.set_filename(header.filename());
  ds.set_format(validator.format());
  ds.set_bad_lines(validator.bad_lines());
  *ds.mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  ASSIGN_OR_RETURN(v1::Dataset stored, scheduler_->RecordDataset(ds));
  if (stored.sha256() != sha) {
    return absl::InternalError(absl::StrCat("dataset id ", ds.id(), " is taken by other bytes"));
  }
  return stored;
}

grpc::Status JobServiceImpl::UploadDataset(grpc::ServerContext* ctx,
                                           grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                           v1::Dataset* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto ds = ReceiveDataset(ctx, reader);
  if (!ds.ok()) return ToGrpcStatus(ds.status());
  *resp = std::move(*ds);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListDatasets(grpc::ServerContext* ctx,
                                          const v1::ListDatasetsRequest* req,
                                          v1::ListDatasetsResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto all = scheduler_->ListDatasets();
  if (!all.ok()) return ToGrpcStatus(all.status());
  for (auto& d : *all) *resp->add_datasets() = std::move(d);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                                        v1::ListModelsResponse* resp) {
  PEFTD_AUTHORIZE(ctx);
  auto models = server::ListModels(options_.model_root);
  if (!models.ok()) return ToGrpcStatus(models.status());
  for (auto& m : *models) *resp->add_models() = std::move(m);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::DownloadAdapter(grpc::ServerContext* ctx,
                                             const v1::DownloadAdapterRequest* req,
                                             grpc::ServerWriter<v1::DownloadAdapterChunk>* writer) {
  PEFTD_AUTHORIZE(ctx);
  auto artifact = scheduler_->GetArtifact(req->job_id(), req->merged(), req->step());
  if (!artifact.ok()) return ToGrpcStatus(artifact.status());
  v1::DownloadAdapterChunk header;
  header.mutable_header()->set_name(
      absl::StrCat(req->job_id(), req->step() > 0 ? absl::StrCat("-step-", req->step()) : "",
                   req->merged() ? "-merged" : "-adapter"));
  header.mutable_header()->set_size_bytes(artifact->size_bytes);
  header.mutable_header()->set_sha256(artifact->sha256);
  if (!writer->Write(header)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  absl::Status st = StreamBlob(*blobs_, artifact->sha256, [&](absl::string_view data, int64_t) {
    if (data.empty()) return true;
    v1::DownloadAdapterChunk chunk;
    chunk.set_chunk(std::string(data));
    return writer->Write(chunk);
  });
  return ToGrpcStatus(st);
}

}  // namespace peftd::server
