#include "server/peftd_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/job_service.h"
#include "server/metrics.h"
#include "server/metrics_observer.h"
#include "server/model_root.h"
#include "server/tls.h"
#include "server/worker_service.h"
#include "server/worker_supervisor.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

absl::Status MakePrivateDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("creating ", dir, ": ", ec.message()));
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("chmod 700 ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadToken(const ServerOptions& o) {
  if (o.auth_token_file.empty()) return o.auth_token;
  std::ifstream in(o.auth_token_file);
  if (!in)
    return absl::NotFoundError(absl::StrCat("--auth-token-file: cannot read ", o.auth_token_file));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(ss.str()));
  if (token.empty()) return absl::InvalidArgumentError("--auth-token-file: the file is empty");
  return token;
}

// "host:port" with the bound port in place of the requested one.
std::string BoundAddress(const std::string& listen, int port) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  return absl::StrCat(host, ":", port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeftdServer>> PeftdServer::Start(const ServerOptions& options,
                                                                const Clock* clock) {
  std::unique_ptr<PeftdServer> s(new PeftdServer());
  s->clock_ = clock;
  RETURN_IF_ERROR(MakePrivateDir(options.data_dir));
  const std::string model_root = options.model_root.empty()
                                     ? (fs::path(options.data_dir) / "models").string()
                                     : options.model_root;
  std::error_code ec;
  fs::create_directories(model_root, ec);
  ASSIGN_OR_RETURN(std::string token, ReadToken(options));

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
  ASSIGN_OR_RETURN(s->scheduler_, Scheduler::Create(s->store_.get(), s->blobs_.get(), clock, sched,
                                                    s->observer_.get()));

  ServiceOptions svc;
  svc.auth_token = token;
  svc.model_root = model_root;
  svc.max_dataset_bytes = options.max_dataset_bytes;
  svc.max_upload_bytes = options.max_upload_bytes;
  s->job_service_ = std::make_unique<JobServiceImpl>(s->scheduler_.get(), s->blobs_.get(), svc);
  s->worker_service_ =
      std::make_unique<WorkerServiceImpl>(s->scheduler_.get(), s->blobs_.get(), svc);

  ASSIGN_OR_RETURN(auto creds, MakeServerCredentials(options));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, creds, &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(s->job_service_.get());
  builder.RegisterService(s->worker_service_.get());
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", options.listen,
                                               " (in use, or not a host:port?)"));
  }
  s->grpc_address_ = BoundAddress(options.listen, port);
  if (auto* health = s->grpc_server_->GetHealthCheckService()) {
    health->SetServingStatus("peftd.v1.JobService", true);
    health->SetServingStatus("peftd.v1.WorkerService", true);
  }

  if (!options.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(s->metrics_server_,
                     MetricsServer::Start(options.metrics_listen, *s->metrics_));
    s->metrics_address_ = BoundAddress(options.metrics_listen, s->metrics_server_->port());
  }

  const absl::Duration tick = std::min(absl::Seconds(1), options.heartbeat_interval / 2);
  s->tick_thread_ = std::thread([srv = s.get(), tick] { srv->TickLoop(tick); });

  if (options.local_workers > 0) {
    if (!options.worker_binary.empty()) {
      RETURN_IF_ERROR(EnsureBuiltinModel(model_root, options.worker_binary));
    }
    s->supervisor_ = std::make_unique<WorkerSupervisor>(options, s->grpc_address_);
    RETURN_IF_ERROR(s->supervisor_->Start());
  }
  return s;
}

PeftdServer::~PeftdServer() { Stop(absl::ZeroDuration()); }

void PeftdServer::TickLoop(absl::Duration every) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopped_) {
    stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(every), [this] { return stopped_; });
    if (stopped_) break;
    lock.unlock();
    scheduler_->Tick();
    lock.lock();
  }
}

void PeftdServer::Stop(absl::Duration grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stop_cv_.notify_all();
  if (scheduler_) scheduler_->Shutdown();  // watch streams end with "resume later"
  if (grpc_server_) {
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    grpc_server_->Wait();
  }
  if (supervisor_) supervisor_->Stop();
  if (tick_thread_.joinable()) tick_thread_.join();
  metrics_server_.reset();
}

}  // namespace peftd::server
