// LeaseLoop::Prepare: a lease turned into JobInputs. Fetches the datasets (cached by sha256),
// the checkpoint to resume from or the weights to start from, and for a rank of a gang wires the
// rendezvous callbacks to the job's report, which the next heartbeat (sent at once) delivers.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/tar.h"
#include "worker/lease_loop.h"
#include "worker/lease_loop_internal.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;

}  // namespace

absl::Status LeaseLoop::Prepare(ActiveJob& job, JobInputs* in) {
  const v1::Lease& lease = job.lease;
  in->job_id = lease.job_id();
  in->attempt = lease.attempt();
  in->spec = lease.spec();
  in->model_root = options_.model_root;
  if (lease.world_size() > 1) {
    // A rank of a gang: what it says about the rendezvous goes to the server at once.
    GangInputs& gang = in->gang;
    gang.rank = lease.rank();
    gang.world_size = lease.world_size();
    gang.key = lease.rendezvous_key();
    gang.address = lease.rendezvous_address();
    gang.advertise_host = options_.advertise_host;
    if (lease.rendezvous_timeout_ms() > 0) gang.timeout_ms = lease.rendezvous_timeout_ms();
    JobReport* report = &job.progress;
    gang.opened = [this, report](const std::string& address) {
      {
        std::lock_guard<std::mutex> lock(report->mu);
        report->report.set_rendezvous_address(address);
      }
      BeatSoon();
    };
    gang.joined = [this, report] {
      {
        std::lock_guard<std::mutex> lock(report->mu);
        report->report.set_joined(true);
      }
      BeatSoon();
    };
    gang.allreduce_seconds = [report](double seconds) {
      std::lock_guard<std::mutex> lock(report->mu);
      report->report.set_allreduce_seconds(seconds);
    };
  }
  const fs::path job_dir = fs::path(options_.cache_dir) / "jobs" / lease.job_id();
  in->work_dir = (job_dir / absl::StrCat("attempt-", lease.attempt())).string();
  std::error_code ec;
  fs::create_directories(in->work_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", in->work_dir, ": ", ec.message()));

  auto fetch = [&](const std::string& what, const std::string& sha, const std::string& path,
                   const BlobReaderOpener& open) {
    grpc::ClientContext ctx;
    SetupContext(&ctx, kBlobDeadline);
    return FetchBlob(what, sha, path, &ctx, open);
  };
  auto fetch_dataset = [&](const std::string& sha, std::string* path) -> absl::Status {
    *path = (fs::path(options_.cache_dir) / "datasets" / (sha + ".jsonl")).string();
    return fetch(absl::StrCat("dataset ", sha.substr(0, 16)), sha, *path,
                 [&](grpc::ClientContext* ctx) {
                   v1::FetchDatasetRequest r;
                   r.set_sha256(sha);
                   return stub_->FetchDataset(ctx, r);
                 });
  };
  RETURN_IF_ERROR(fetch_dataset(lease.training_dataset_sha256(), &in->training_data_path));
  in->training_data_name = lease.training_dataset_filename();
  in->validation_data_name = lease.validation_dataset_filename();
  if (!lease.validation_dataset_sha256().empty()) {
    RETURN_IF_ERROR(fetch_dataset(lease.validation_dataset_sha256(), &in->validation_data_path));
  }
  if (lease.has_resume_from() && !lease.resume_from().sha256().empty()) {
    const v1::Checkpoint& cp = lease.resume_from();
    const fs::path dir = job_dir / absl::StrCat("resume-step-", cp.step());
    RETURN_IF_ERROR(fetch(absl::StrCat("checkpoint of step ", cp.step()), cp.sha256(),
                          (dir / "checkpoint.safetensors").string(), [&](grpc::ClientContext* ctx) {
                            v1::FetchCheckpointRequest r;
                            r.set_job_id(lease.job_id());
                            r.set_attempt(lease.attempt());
                            r.set_sha256(cp.sha256());
                            return stub_->FetchCheckpoint(ctx, r);
                          }));
    in->resume_checkpoint_dir = dir.string();
  } else if (lease.has_init_from() && !lease.init_from().sha256().empty()) {
    // A resumed attempt has these weights in its checkpoint already.
    const v1::InitSource& init = lease.init_from();
    const std::string what = init.adapter() ? absl::StrCat("the adapter of job ", init.job_id())
                                            : absl::StrCat("the checkpoint of step ", init.step(),
                                                           " of job ", init.job_id());
    const fs::path dir = job_dir / "init";
    const fs::path blob =
        init.adapter() ? job_dir / "init-adapter.tar" : dir / "checkpoint.safetensors";
    RETURN_IF_ERROR(fetch(what, init.sha256(), blob.string(), [&](grpc::ClientContext* ctx) {
      v1::FetchCheckpointRequest r;
      r.set_job_id(lease.job_id());
      r.set_attempt(lease.attempt());
      r.set_sha256(init.sha256());
      return stub_->FetchCheckpoint(ctx, r);
    }));
    if (init.adapter()) {
      fs::remove_all(dir, ec);
      RETURN_IF_ERROR(ExtractTarFile(blob.string(), dir.string()));
    }
    in->init = InitWeights{dir.string(), init.adapter(), what};
  }
  return absl::OkStatus();
}

}  // namespace peftd::worker
