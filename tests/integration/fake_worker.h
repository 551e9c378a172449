// A scripted peftd worker for integration tests: each call is one WorkerService RPC, as the
// lease loop would make it, so a test can play a worker (or a hostile client posing as one).
// Header-only, like peftd_process.h.
#ifndef PEFTD_TESTS_INTEGRATION_FAKE_WORKER_H_
#define PEFTD_TESTS_INTEGRATION_FAKE_WORKER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "peftd/v1/worker.grpc.pb.h"

namespace peftd::testing {

// A scripted worker: each call is one WorkerService RPC, as the lease loop would make it.
class FakeWorker {
 public:
  // `token`: sent as `authorization: Bearer <token>` on every call when not empty.
  FakeWorker(std::shared_ptr<grpc::Channel> channel, std::string id, std::string token = "")
      : stub_(v1::WorkerService::NewStub(channel)), id_(std::move(id)), token_(std::move(token)) {}

  // The memory Register advertises (0: unknown, which turns the server's memory check off).
  void set_memory_bytes(int64_t bytes) { memory_bytes_ = bytes; }

  grpc::Status Register(const std::vector<std::string>& running = {}) {
    v1::RegisterRequest req;
    req.set_worker_id(id_);
    v1::Device* cpu = req.add_devices();
    cpu->set_name("cpu");
    cpu->set_memory_bytes(memory_bytes_);
    for (const auto& j : running) req.add_running_job_ids(j);
    v1::RegisterResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return stub_->Register(&ctx, req, &resp);
  }

  grpc::Status Heartbeat(int free_slots, const std::vector<v1::ProgressReport>& reports,
                         v1::HeartbeatResponse* resp) {
    v1::HeartbeatRequest req;
    req.set_worker_id(id_);
    req.set_free_slots(free_slots);
    for (const auto& r : reports) *req.add_reports() = r;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return stub_->Heartbeat(&ctx, req, resp);
  }

  static v1::ProgressReport Report(const v1::Lease& lease, int step) {
    v1::ProgressReport r;
    r.set_job_id(lease.job_id());
    r.set_attempt(lease.attempt());
    r.set_phase(v1::TRAINING);
    r.mutable_progress()->set_step(step);
    r.mutable_progress()->set_total_steps(4);
    r.mutable_progress()->set_train_loss(2.0 / (step + 1));
    auto* e = r.add_events();
    e->set_level(v1::JobEvent::INFO);
    e->set_message(absl::StrCat("worker log at step ", step));
    return r;
  }

  grpc::Status Fetch(const std::string& sha256, std::string* bytes) {
    v1::FetchDatasetRequest req;
    req.set_sha256(sha256);
    grpc::ClientContext ctx;
    Prepare(&ctx);
    auto reader = stub_->FetchDataset(&ctx, req);
    v1::BlobChunk chunk;
    while (reader->Read(&chunk)) *bytes += chunk.data();
    return reader->Finish();
  }

  grpc::Status FetchCheckpoint(const v1::Lease& lease, std::string* bytes) {
    v1::FetchCheckpointRequest req;
    req.set_job_id(lease.job_id());
    req.set_attempt(lease.attempt());
    req.set_sha256(lease.resume_from().sha256());
    grpc::ClientContext ctx;
    Prepare(&ctx);
    auto reader = stub_->FetchCheckpoint(&ctx, req);
    v1::BlobChunk chunk;
    while (reader->Read(&chunk)) *bytes += chunk.data();
    return reader->Finish();
  }

  grpc::Status Upload(bool checkpoint, const std::string& job_id, int attempt, int64_t step,
                      const std::string& bytes, const std::string& claimed_sha = "") {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    v1::UploadBlobResponse resp;
    auto writer =
        checkpoint ? stub_->UploadCheckpoint(&ctx, &resp) : stub_->UploadAdapter(&ctx, &resp);
    v1::UploadBlobRequest header;
    header.mutable_header()->set_job_id(job_id);
    header.mutable_header()->set_attempt(attempt);
    header.mutable_header()->set_step(step);
    header.mutable_header()->set_size_bytes(static_cast<int64_t>(bytes.size()));
    header.mutable_header()->set_sha256(claimed_sha.empty() ? Sha256Hex(bytes) : claimed_sha);
    writer->Write(header);
    v1::UploadBlobRequest chunk;
    chunk.set_chunk(bytes);
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Complete(const v1::Lease& lease, v1::JobState state) {
    v1::CompleteJobRequest req;
    req.set_worker_id(id_);
    req.set_job_id(lease.job_id());
    req.set_attempt(lease.attempt());
    req.set_final_state(state);
    *req.mutable_last_report() = Report(lease, 4);
    v1::CompleteJobResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return stub_->CompleteJob(&ctx, req, &resp);
  }

  // Runs a leased job to SUCCEEDED: progress, adapter upload, completion.
  void Finish(const v1::Lease& lease, const std::string& adapter) {
    v1::HeartbeatResponse resp;
    ASSERT_TRUE(Heartbeat(0, {Report(lease, 4)}, &resp).ok());
    ASSERT_TRUE(Upload(false, lease.job_id(), lease.attempt(), 0, adapter).ok());
    ASSERT_TRUE(Complete(lease, v1::SUCCEEDED).ok());
  }

 private:
  void Prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::string id_;
  std::string token_;
  int64_t memory_bytes_ = 0;
};

}  // namespace peftd::testing

#endif  // PEFTD_TESTS_INTEGRATION_FAKE_WORKER_H_
