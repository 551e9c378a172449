#include "server/peftd_server.h"

#include <grpcpp/health_check_service_interface.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/host_memory.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "server/dataset_upload.h"
#include "server/job_service.h"
#include "server/metrics.h"
#include "server/metrics_observer.h"
#include "server/model_root.h"
#include "server/reflection_service.h"
#include "server/tls.h"
#include "server/worker_service.h"
#include "server/worker_supervisor.h"
#include "spdlog/spdlog.h"
#include "storage/data_dir_lock.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

// How long open RPCs get to finish on shutdown before they are cancelled.
constexpr absl::Duration kRpcDrain = absl::Seconds(1);

absl::Status MakePrivateDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("creating ", dir, ": ", ec.message()));
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("chmod 700 ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

// Offers the example datasets (DESIGN.md "Embedded default") as if they had been uploaded: same
// validation, same sha256-derived ids. A bad example is logged and skipped, never fatal.
void ImportExampleDatasets(const std::string& examples_dir, Scheduler& scheduler,
                           storage::BlobStore& blobs) {
  if (examples_dir.empty()) return;
  std::error_code ec;
  for (const fs::path& dir : {fs::path(examples_dir), fs::path(examples_dir) / "datasets"}) {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() != ".jsonl") continue;
      std::ifstream in(entry.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
      const std::string name = entry.path().filename().string();
      DatasetUploadValidator validator;
      validator.Feed(bytes);
      validator.Finish();
      absl::Status st = validator.ToStatus(name);
      absl::StatusOr<std::string> sha = st.ok() ? blobs.Put(bytes) : st;
      if (sha.ok()) {
        v1::Dataset ds;
        ds.set_id(DatasetIdOf(*sha));
        ds.set_sha256(*sha);
        ds.set_size_bytes(static_cast<int64_t>(bytes.size()));
        ds.set_lines(validator.lines());
        ds.set_filename(name);
        ds.set_format(validator.format());
        *ds.mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
        st = scheduler.RecordDataset(ds).status();
        if (st.ok()) spdlog::info("example dataset {} is {}", name, ds.id());
      } else {
        st = sha.status();
      }
      if (!st.ok()) spdlog::warn("example dataset {} skipped: {}", name, std::string(st.message()));
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeftdServer>> PeftdServer::Start(const ServerOptions& options,
                                                                const Clock* clock) {
  std::unique_ptr<PeftdServer> s(new PeftdServer());
  s->clock_ = clock;
  s->shutdown_grace_ = options.shutdown_grace;
  RETURN_IF_ERROR(MakePrivateDir(options.data_dir));
  // Before anything opens the database: two servers on one data dir would both requeue, lease and
  // sweep the same jobs and blobs.
  ASSIGN_OR_RETURN(s->data_dir_lock_, storage::DataDirLock::Acquire(options.data_dir));
  if (const std::string warning = InsecureListenWarning(options); !warning.empty()) {
    spdlog::warn("{}{}", warning, options.auth_token.empty() ? " (allowed by --insecure)" : "");
  }
  if (options.worker_token_generated) {
    spdlog::info(
        "workers' token: generated for the local workers; remote workers need "
        "--worker-token-file on peftd and the same file as their --token-file");
  }
  const std::string model_root = options.model_root.empty()
                                     ? (fs::path(options.data_dir) / "models").string()
                                     : options.model_root;
  std::error_code ec;
  fs::create_directories(model_root, ec);
  const std::string& token = options.auth_token;  // ParseServerOptions read --auth-token-file

  ASSIGN_OR_RETURN(s->store_,
                   storage::JobStore::Open((fs::path(options.data_dir) / "peftd.db").string()));
  ASSIGN_OR_RETURN(storage::BlobStore blobs,
                   storage::BlobStore::Open((fs::path(options.data_dir) / "blobs").string()));
  s->blobs_ = std::make_unique<storage::BlobStore>(std::move(blobs));
  s->metrics_ = std::make_unique<Metrics>();
  s->observer_ = std::make_unique<MetricsObserver>(s->metrics_.get());

  SchedulerOptions sched;
  sched.model_root = model_root;
  sched.heartbeat_interval = options.heartbeat_interval;
  sched.lease_timeout = options.lease_timeout;
  sched.restart_grace = options.restart_grace;
  sched.rendezvous_timeout = options.rendezvous_timeout;
  sched.max_sweep_children = options.max_sweep_children;
  if (options.local_workers > 0) {
    // Until the local workers register, admission checks job memory against this host's.
    sched.local_worker_memory_bytes = UsableMemoryBytes().value_or(0);
  }
  ASSIGN_OR_RETURN(s->scheduler_, Scheduler::Create(s->store_.get(), s->blobs_.get(), clock, sched,
                                                    s->observer_.get()));

  ImportExampleDatasets(options.examples_dir, *s->scheduler_, *s->blobs_);
  s->blob_sweep_interval_ = options.blob_sweep_interval;
  s->blob_sweep_grace_ = options.blob_sweep_grace;
  s->SweepBlobs();

  ServiceOptions svc;
  svc.auth_token = token;
  svc.worker_token = options.worker_token;
  svc.model_root = model_root;
  svc.max_dataset_bytes = options.max_dataset_bytes;
  s->job_service_ = std::make_unique<JobServiceImpl>(s->scheduler_.get(), s->blobs_.get(), svc);
  s->worker_service_ =
      std::make_unique<WorkerServiceImpl>(s->scheduler_.get(), s->blobs_.get(), svc);

  ASSIGN_OR_RETURN(auto creds, MakeServerCredentials(options));
  // Health stays open (load balancers and orchestrators probe it without credentials, and it
  // tells nothing but SERVING); reflection needs the users' token like JobService.
  grpc::EnableDefaultHealthCheckService(true);
  s->reflection_service_ = std::make_unique<ReflectionService>(
      std::vector<std::string>{"peftd.v1.JobService", "peftd.v1.WorkerService",
                               "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"},
      token);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, creds, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.RegisterService(s->job_service_.get());
  builder.RegisterService(s->worker_service_.get());
  builder.RegisterService(s->reflection_service_.get());
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", options.listen,
                                               " (in use, or not a host:port?)"));
  }
  s->grpc_address_ = LocalDialAddress(options.listen, port);
  if (auto* health = s->grpc_server_->GetHealthCheckService()) {
    health->SetServingStatus("peftd.v1.JobService", true);
    health->SetServingStatus("peftd.v1.WorkerService", true);
  }

  if (!options.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(s->metrics_server_,
                     MetricsServer::Start(options.metrics_listen, *s->metrics_));
    s->metrics_address_ = LocalDialAddress(options.metrics_listen, s->metrics_server_->port());
  }

  const absl::Duration tick = std::min(absl::Seconds(1), options.heartbeat_interval / 2);
  s->tick_thread_ = std::thread([srv = s.get(), tick] { srv->TickLoop(tick); });

  if (options.local_workers > 0) {
    RETURN_IF_ERROR(EnsureBuiltinModel(model_root, options.worker_binary));
    WorkerSupervisorOptions supervised = SupervisorOptionsFrom(options, s->grpc_address_);
    // A local worker's death is known here at once: its jobs need not wait for the lease.
    supervised.on_exit = [sched = s->scheduler_.get()](const std::string& id,
                                                       const std::string& how) {
      if (absl::Status st = sched->WorkerExited(id, how); !st.ok()) {
        spdlog::warn("worker {} ended; its leases expire instead: {}", id,
                     std::string(st.message()));
      }
    };
    s->supervisor_ = std::make_unique<WorkerSupervisor>(std::move(supervised),
                                                        /*launcher=*/nullptr);
    RETURN_IF_ERROR(s->supervisor_->Start());
  } else if (absl::Status st = EnsureBuiltinModel(model_root, options.worker_binary); !st.ok()) {
    // Remote workers only (compose, Kubernetes): submits are checked against this root, so the
    // built-in model is wanted here too, but a server without peftd-worker still serves.
    spdlog::warn("the built-in model is not available ({}); put models under {}",
                 std::string(st.message()), model_root);
  }
  return s;
}

PeftdServer::~PeftdServer() { Stop(absl::ZeroDuration()); }

void PeftdServer::TickLoop(absl::Duration every) {
  std::unique_lock<std::mutex> lock(mu_);
  absl::Time next_sweep = clock_->Now() + blob_sweep_interval_;
  while (!stopped_) {
    stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(every), [this] { return stopped_; });
    if (stopped_) break;
    lock.unlock();
    scheduler_->Tick();
    if (clock_->Now() >= next_sweep) {
      SweepBlobs();
      next_sweep = clock_->Now() + blob_sweep_interval_;
    }
    lock.lock();
  }
}

void PeftdServer::SweepBlobs() {
  absl::StatusOr<std::set<std::string>> keep = store_->ReferencedBlobs();
  absl::StatusOr<storage::BlobStore::SweepResult> swept =
      keep.ok() ? blobs_->Sweep(*keep, blob_sweep_grace_) : keep.status();
  if (!swept.ok()) {
    spdlog::warn("blob sweep skipped: {}", std::string(swept.status().message()));
    return;
  }
  if (swept->removed > 0) {
    spdlog::info("blob sweep: removed {} unreferenced blobs ({} bytes), {} kept", swept->removed,
                 swept->bytes, swept->kept);
  }
}

void PeftdServer::Stop(absl::Duration grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stop_cv_.notify_all();
  if (grpc_server_ != nullptr) {
    // Load balancers and `peftctl health` see NOT_SERVING while the rest drains.
    if (auto* health = grpc_server_->GetHealthCheckService()) health->Shutdown();
  }
  if (scheduler_) scheduler_->Shutdown();  // watch streams end with "resume later"
  if (grpc_server_) {
    // Unary calls end within milliseconds and watch streams end above; what is still open after
    // kRpcDrain is a stream whose client sends or reads slowly or not at all (an upload left
    // half-way, a health Watch). Those are cut (the client sees UNAVAILABLE and retries) instead
    // of holding the shutdown for the whole grace, which is for the local workers.
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + std::min(grace, kRpcDrain)));
    grpc_server_->Wait();
  }
  if (supervisor_) supervisor_->Stop();
  if (tick_thread_.joinable()) tick_thread_.join();
  metrics_server_.reset();
}

}  // namespace peftd::server
