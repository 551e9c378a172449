// The lease loop against an in-process fake WorkerService on 127.0.0.1: register, lease, progress,
// checkpoint and adapter upload, completion, cancellation, and re-registration after a restart.
#include "worker/lease_loop.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/sha256.h"
#include "common/tar.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
const std::string kDataset = "{\"text\": \"hello\"}\n";

class FakeWorkerService final : public v1::WorkerService::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest* req,
                        v1::RegisterResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu);
    registrations.push_back(*req);
    resp->set_heartbeat_interval_ms(heartbeat_interval_ms);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu);
    bool known = false;
    for (const auto& r : registrations) known = known || r.worker_id() == req->worker_id();
    // As the real server does: a worker it does not know (e.g. after a restart) must register.
    if (!known) return {grpc::StatusCode::NOT_FOUND, "unknown worker " + req->worker_id()};
    for (const auto& r : req->reports()) {
      last_report = r;
      for (const auto& e : r.events()) events.push_back(e.message());
      timeline.push_back("step " + std::to_string(r.progress().step()) + " " +
                         v1::JobPhase_Name(r.phase()));
    }
    if (req->free_slots() > 0 && !leased) {
      leased = true;
      auto* lease = resp->add_leases();
      lease->set_job_id("job-1");
      lease->set_attempt(1);
      lease->mutable_spec()->set_max_steps(3);
      lease->set_training_dataset_sha256(Sha256Hex(kDataset));
    }
    if (cancel) resp->add_cancel_job_ids("job-1");
    return grpc::Status::OK;
  }
  grpc::Status FetchDataset(grpc::ServerContext*, const v1::FetchDatasetRequest* req,
                            grpc::ServerWriter<v1::BlobChunk>* writer) override {
    if (req->sha256() != Sha256Hex(kDataset))
      return {grpc::StatusCode::NOT_FOUND, "no such dataset"};
    v1::BlobChunk c;
    c.set_data(kDataset);
    writer->Write(c);
    return grpc::Status::OK;
  }
  grpc::Status UploadCheckpoint(grpc::ServerContext*, grpc::ServerReader<v1::UploadBlobRequest>* r,
                                v1::UploadBlobResponse*) override {
    return Receive(r, &checkpoints, "checkpoint");
  }
  grpc::Status UploadAdapter(grpc::ServerContext*, grpc::ServerReader<v1::UploadBlobRequest>* r,
                             v1::UploadBlobResponse*) override {
    return Receive(r, &adapters, "adapter");
  }
  grpc::Status CompleteJob(grpc::ServerContext*, const v1::CompleteJobRequest* req,
                           v1::CompleteJobResponse*) override {
    std::lock_guard<std::mutex> lock(mu);
    completions.push_back(*req);
    return grpc::Status::OK;
  }

  grpc::Status Receive(grpc::ServerReader<v1::UploadBlobRequest>* reader,
                       std::vector<std::string>* into, const std::string& what) {
    v1::UploadBlobRequest msg;
    std::string header_sha, bytes;
    int64_t step = 0;
    while (reader->Read(&msg)) {
      if (msg.has_header()) {
        header_sha = msg.header().sha256();
        step = msg.header().step();
      } else {
        bytes += msg.chunk();
      }
    }
    if (Sha256Hex(bytes) != header_sha) return {grpc::StatusCode::DATA_LOSS, "sha256 mismatch"};
    std::lock_guard<std::mutex> lock(mu);
    into->push_back(bytes);
    timeline.push_back(what + " " + std::to_string(step));
    return grpc::Status::OK;
  }

  std::mutex mu;
  int heartbeat_interval_ms = 50;
  bool leased = false;
  bool cancel = false;
  std::vector<v1::RegisterRequest> registrations;
  std::vector<std::string> events, checkpoints, adapters;
  // Reports ("step N PHASE") and uploads ("checkpoint N") in the order the server got them.
  std::vector<std::string> timeline;
  std::vector<v1::CompleteJobRequest> completions;
  v1::ProgressReport last_report;
};

struct ServerHandle {
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

ServerHandle Start(FakeWorkerService* service, int port = 0) {
  ServerHandle h;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                     &h.port);
  b.RegisterService(service);
  h.server = b.BuildAndStart();
  return h;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds limit = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

LeaseLoopOptions Options(int port, const std::string& name) {
  LeaseLoopOptions o;
  o.server = "127.0.0.1:" + std::to_string(port);
  o.worker_id = "w-" + name;
  o.cache_dir =
      (fs::temp_directory_path() / ("peftd_lease_" + name + std::to_string(getpid()))).string();
  fs::remove_all(o.cache_dir);
  o.min_backoff = absl::Milliseconds(20);
  o.max_backoff = absl::Milliseconds(200);
  return o;
}

// A runner that "trains" `steps` steps, checkpointing each, and writes a one-file adapter.
JobRunner FakeRunner(int steps, std::chrono::milliseconds per_step) {
  return [=](const JobInputs& in, train::ProgressSink* sink,
             const std::atomic<bool>* cancelled) -> absl::StatusOr<JobOutputs> {
    std::ifstream data(in.training_data_path);
    std::string line;
    std::getline(data, line);
    if (line + "\n" != kDataset) return absl::DataLossError("dataset not fetched intact");
    sink->OnPhase(train::Phase::kTraining);
    for (int s = 1; s <= steps; ++s) {
      if (*cancelled) return absl::CancelledError("cancelled");
      std::this_thread::sleep_for(per_step);
      train::StepMetrics m;
      m.step = s;
      m.total_steps = steps;
      m.loss = 1.0 / s;
      m.gate_sparsity_by_module["model.layers.0.self_attn.q_proj"] = 0.5;
      m.gate_tau_by_module["model.layers.0.self_attn.q_proj"] = 0.01;
      m.gate_token_sparsity_by_module["model.layers.0.self_attn.q_proj"] = 0.25;
      m.gate_token_sparsity = 0.25;
      sink->OnStep(m);
      fs::path cp = fs::path(in.work_dir) / ("step-" + std::to_string(s));
      fs::create_directories(cp);
      std::ofstream(cp / "checkpoint.safetensors") << "checkpoint " << s;
      sink->OnPhase(train::Phase::kCheckpointing);  // as the trainer does
      sink->OnCheckpoint(s, cp.string());
      sink->OnPhase(train::Phase::kTraining);
    }
    sink->OnLog(train::LogLevel::kInfo, "done training");
    JobOutputs out;
    out.adapter_dir = (fs::path(in.work_dir) / "adapter").string();
    fs::create_directories(out.adapter_dir);
    std::ofstream(fs::path(out.adapter_dir) / "adapter_config.json") << "{\"peft_type\": \"LORA\"}";
    out.trainable_parameters = 42;
    return out;
  };
}

TEST(LeaseLoop, RunsALeasedJobToCompletion) {
  FakeWorkerService service;
  auto server = Start(&service);
  LeaseLoop loop(Options(server.port, "ok"), FakeRunner(3, std::chrono::milliseconds(10)));
  std::thread t([&] { loop.Run(); });
  struct Joiner {
    LeaseLoop& loop;
    std::thread& t;
    ~Joiner() {
      loop.Stop();
      if (t.joinable()) t.join();
    }
  } joiner{loop, t};
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return !service.completions.empty();
  }));
  std::lock_guard<std::mutex> lock(service.mu);
  const auto& done = service.completions[0];
  EXPECT_EQ(done.job_id(), "job-1");
  EXPECT_EQ(done.attempt(), 1);
  EXPECT_EQ(done.final_state(), v1::SUCCEEDED);
  EXPECT_EQ(done.last_report().progress().step(), 3);
  EXPECT_EQ(done.last_report().trainable_parameters(), 42);
  ASSERT_EQ(done.last_report().progress().gates_size(), 1);
  EXPECT_DOUBLE_EQ(done.last_report().progress().gates(0).tau(), 0.01);
  EXPECT_DOUBLE_EQ(done.last_report().progress().gates(0).sparsity(), 0.5);
  EXPECT_DOUBLE_EQ(done.last_report().progress().gates(0).token_sparsity(), 0.25);
  EXPECT_DOUBLE_EQ(done.last_report().progress().gate_token_sparsity(), 0.25);
  EXPECT_EQ(service.checkpoints.size(), 3u);
  EXPECT_EQ(service.checkpoints[2], "checkpoint 3");
  // Each checkpoint reaches the server after the report of its step, in phase CHECKPOINTING.
  for (int s = 1; s <= 3; ++s) {
    const std::string report = "step " + std::to_string(s) + " CHECKPOINTING";
    auto r = std::find(service.timeline.begin(), service.timeline.end(), report);
    auto c = std::find(service.timeline.begin(), service.timeline.end(),
                       "checkpoint " + std::to_string(s));
    ASSERT_NE(r, service.timeline.end()) << report;
    ASSERT_NE(c, service.timeline.end()) << "checkpoint " << s;
    EXPECT_LT(r, c) << "checkpoint " << s << " arrived before the report of its step";
  }
  ASSERT_EQ(service.adapters.size(), 1u);
  fs::path out = fs::temp_directory_path() / ("peftd_lease_untar" + std::to_string(getpid()));
  ASSERT_TRUE(UntarToDirectory(service.adapters[0], out.string()).ok());
  EXPECT_TRUE(fs::exists(out / "adapter_config.json"));
}

// With a heartbeat interval far longer than the job, the phases still reach the server as they
// change: back to TRAINING after each checkpoint, not a minute later.
TEST(LeaseLoop, PhaseChangesAreReportedWithoutWaitingForTheInterval) {
  FakeWorkerService service;
  service.heartbeat_interval_ms = 60000;
  auto server = Start(&service);
  LeaseLoop loop(Options(server.port, "phase"), FakeRunner(3, std::chrono::milliseconds(300)));
  std::thread t([&] { loop.Run(); });
  struct Joiner {
    LeaseLoop& loop;
    std::thread& t;
    ~Joiner() {
      loop.Stop();
      if (t.joinable()) t.join();
    }
  } joiner{loop, t};
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return !service.completions.empty();
  }));
  std::lock_guard<std::mutex> lock(service.mu);
  for (int s = 1; s <= 2; ++s) {
    auto c = std::find(service.timeline.begin(), service.timeline.end(),
                       "checkpoint " + std::to_string(s));
    auto next = std::find(service.timeline.begin(), service.timeline.end(),
                          "checkpoint " + std::to_string(s + 1));
    ASSERT_NE(c, service.timeline.end());
    EXPECT_NE(std::find(c, next, "step " + std::to_string(s) + " TRAINING"), next)
        << "no TRAINING report between checkpoints " << s << " and " << s + 1;
  }
}

TEST(LeaseLoop, CancellationStopsTheJobWithinAStep) {
  FakeWorkerService service;
  auto server = Start(&service);
  LeaseLoop loop(Options(server.port, "cancel"), FakeRunner(100000, std::chrono::milliseconds(5)));
  std::thread t([&] { loop.Run(); });
  struct Joiner {
    LeaseLoop& loop;
    std::thread& t;
    ~Joiner() {
      loop.Stop();
      if (t.joinable()) t.join();
    }
  } joiner{loop, t};
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return service.last_report.progress().step() > 2;
  }));
  {
    std::lock_guard<std::mutex> lock(service.mu);
    service.cancel = true;
  }
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return !service.completions.empty();
  }));
  std::lock_guard<std::mutex> lock(service.mu);
  EXPECT_EQ(service.completions[0].final_state(), v1::CANCELLED);
  EXPECT_TRUE(service.adapters.empty());
}

TEST(LeaseLoop, ReRegistersWithItsRunningJobAfterAServerRestart) {
  auto service = std::make_unique<FakeWorkerService>();
  auto server = Start(service.get());
  const int port = server.port;
  LeaseLoop loop(Options(port, "restart"), FakeRunner(100000, std::chrono::milliseconds(5)));
  std::thread t([&] { loop.Run(); });
  struct Joiner {
    LeaseLoop& loop;
    std::thread& t;
    ~Joiner() {
      loop.Stop();
      if (t.joinable()) t.join();
    }
  } joiner{loop, t};
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service->mu);
    return service->last_report.progress().step() > 1;
  }));
  server.server->Shutdown();
  server.server.reset();
  auto second = std::make_unique<FakeWorkerService>();
  second->leased = true;  // the new server must not hand out the job again
  auto restarted = Start(second.get(), port);
  ASSERT_EQ(restarted.port, port);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(second->mu);
    return !second->registrations.empty() && second->last_report.progress().step() > 0;
  }));
  {
    std::lock_guard<std::mutex> lock(second->mu);
    ASSERT_EQ(second->registrations[0].running_job_ids_size(), 1);
    EXPECT_EQ(second->registrations[0].running_job_ids(0), "job-1");
  }
}

}  // namespace
}  // namespace peftd::worker
