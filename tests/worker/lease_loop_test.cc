// The lease loop against an in-process fake WorkerService on 127.0.0.1: register, lease, progress,
// checkpoint and adapter upload, completion, cancellation, and re-registration after a restart.
#include "worker/lease_loop.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "common/host_memory.h"
#include "common/sha256.h"
#include "common/tar.h"

namespace peftd::worker {
namespace {

namespace fs = std::filesystem;
const std::string kDataset = "{\"text\": \"hello\"}\n";

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds limit = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

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
      reports.push_back(r);
      for (const auto& e : r.events()) events.push_back(e.message());
      timeline.push_back("step " + std::to_string(r.progress().step()) + " " +
                         v1::JobPhase_Name(r.phase()));
    }
    for (const auto& r : req->reports()) {
      // As the real server does: a report of an attempt that no longer holds the lease is told
      // to stop.
      auto it = handed.find(r.job_id());
      if (it != handed.end() && it->second != r.attempt()) resp->add_drop_job_ids(r.job_id());
      attempts_reported.insert(r.attempt());
    }
    if (req->free_slots() > 0 && !leased) {
      leased = true;
      for (int i = 1; i <= jobs; ++i) {
        auto* lease = resp->add_leases();
        lease->set_job_id("job-" + std::to_string(i));
        lease->set_attempt(1);
        lease->mutable_spec()->set_max_steps(3);
        lease->set_training_dataset_sha256(Sha256Hex(dataset));
        handed[lease->job_id()] = 1;
      }
    }
    for (const auto& lease : extra_leases) {
      *resp->add_leases() = lease;
      handed[lease.job_id()] = lease.attempt();
    }
    extra_leases.clear();
    ++beats;
    if (cancel) resp->add_cancel_job_ids("job-1");
    return grpc::Status::OK;
  }
  grpc::Status FetchDataset(grpc::ServerContext*, const v1::FetchDatasetRequest* req,
                            grpc::ServerWriter<v1::BlobChunk>* writer) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (req->sha256() != Sha256Hex(dataset))
        return {grpc::StatusCode::NOT_FOUND, "no such dataset"};
      data = dataset;
      ++fetches_started;
    }
    // Holds every fetch until `fetch_together` of them are under way, so they overlap.
    WaitFor(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          return fetches_started >= fetch_together;
        },
        std::chrono::seconds(5));
    for (size_t at = 0; at < data.size(); at += fetch_chunk_bytes) {
      if (fetch_fail_after_bytes >= 0 && at >= static_cast<size_t>(fetch_fail_after_bytes)) {
        return fetch_error;
      }
      v1::BlobChunk c;
      c.set_data(data.substr(at, fetch_chunk_bytes));
      if (at == 0) c.set_total_size_bytes(static_cast<int64_t>(data.size()));
      writer->Write(c);
      if (fetch_together > 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return grpc::Status::OK;
  }
  grpc::Status UploadCheckpoint(grpc::ServerContext*, grpc::ServerReader<v1::UploadBlobRequest>* r,
                                v1::UploadBlobResponse*) override {
    return Receive(r, &checkpoints, "checkpoint");
  }
  grpc::Status UploadAdapter(grpc::ServerContext*, grpc::ServerReader<v1::UploadBlobRequest>* r,
                             v1::UploadBlobResponse*) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!adapter_error.ok()) return adapter_error;
    }
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
  int jobs = 1;  // leases job-1 .. job-N, attempt 1, at the first heartbeat with a free slot
  std::string dataset = kDataset;
  int fetch_together = 1;
  size_t fetch_chunk_bytes = 64 << 10;
  int64_t fetch_fail_after_bytes = -1;  // >= 0: the fetch ends with fetch_error there
  grpc::Status fetch_error;
  grpc::Status adapter_error;           // UploadAdapter's answer when set
  std::vector<v1::Lease> extra_leases;  // handed out at the next heartbeat
  bool leased = false;
  bool cancel = false;
  int fetches_started = 0;
  int beats = 0;
  std::map<std::string, int> handed;  // the attempt of each job's latest lease
  std::set<int> attempts_reported;
  std::vector<v1::RegisterRequest> registrations;
  std::vector<std::string> events, checkpoints, adapters;
  // Reports ("step N PHASE") and uploads ("checkpoint N") in the order the server got them.
  std::vector<std::string> timeline;
  std::vector<v1::CompleteJobRequest> completions;
  v1::ProgressReport last_report;
  std::vector<v1::ProgressReport> reports;  // every report, in order
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

absl::Status ExtractString(const std::string& archive, const fs::path& dir) {
  const fs::path file = dir.string() + ".tar";
  std::ofstream(file, std::ios::binary) << archive;
  absl::Status st = ExtractTarFile(file.string(), dir.string());
  fs::remove(file);
  return st;
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

// Larger than one upload chunk (1 MiB), so the adapter travels in several messages.
std::string AdapterWeights() {
  std::string w(3 << 20, '\0');
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<char>(i * 7 + i / 4096);
  return w;
}

// A runner that "trains" `steps` steps, checkpointing each, and writes a one-file adapter.
JobRunner FakeRunner(int steps, std::chrono::milliseconds per_step,
                     const std::string& dataset = kDataset) {
  return [=](const JobInputs& in, train::ProgressSink* sink,
             const std::atomic<bool>* cancelled) -> absl::StatusOr<JobOutputs> {
    std::ifstream data(in.training_data_path, std::ios::binary);
    std::stringstream got;
    got << data.rdbuf();
    if (got.str() != dataset) return absl::DataLossError("dataset not fetched intact");
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
    std::ofstream(fs::path(out.adapter_dir) / "adapter_model.safetensors", std::ios::binary)
        << AdapterWeights();
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
  fs::remove_all(out);
  ASSERT_TRUE(ExtractString(service.adapters[0], out).ok());
  EXPECT_TRUE(fs::exists(out / "adapter_config.json"));
  std::ifstream weights(out / "adapter_model.safetensors", std::ios::binary);
  std::stringstream got;
  got << weights.rdbuf();
  EXPECT_TRUE(got.str() == AdapterWeights()) << "the adapter weights did not arrive intact";
  fs::remove_all(out);
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

// Runs a lease loop on a thread of its own until the test ends.
class RunningLoop {
 public:
  RunningLoop(LeaseLoopOptions options, JobRunner runner)
      : loop_(std::move(options), std::move(runner)), thread_([this] { loop_.Run(); }) {}
  ~RunningLoop() {
    loop_.Stop();
    thread_.join();
  }

 private:
  LeaseLoop loop_;
  std::thread thread_;
};

std::string Dataset(size_t bytes) {
  std::string out;
  for (int i = 0; out.size() < bytes; ++i) {
    out += "{\"text\": \"record " + std::to_string(i) + "\"}\n";
  }
  return out;
}

// Every file left under `dir`, temp files included.
std::vector<std::string> FilesUnder(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file()) out.push_back(fs::relative(it->path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool CompletionsAtLeast(FakeWorkerService& service, size_t n,
                        std::chrono::seconds limit = std::chrono::seconds(20)) {
  return WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(service.mu);
        return service.completions.size() >= n;
      },
      limit);
}

// Two slots, two jobs on one dataset: both fetch it at once, and each gets the whole file.
TEST(LeaseLoopFetch, ConcurrentFetchesOfOneBlobDoNotShareATempFile) {
  FakeWorkerService service;
  service.jobs = 2;
  service.dataset = Dataset(1 << 20);
  service.fetch_together = 2;
  service.fetch_chunk_bytes = 16 << 10;
  auto server = Start(&service);
  LeaseLoopOptions options = Options(server.port, "concurrent");
  options.slots = 2;
  {
    RunningLoop loop(options, FakeRunner(1, std::chrono::milliseconds(1), service.dataset));
    ASSERT_TRUE(CompletionsAtLeast(service, 2));
  }
  std::lock_guard<std::mutex> lock(service.mu);
  EXPECT_EQ(service.fetches_started, 2);
  for (const auto& done : service.completions) {
    EXPECT_EQ(done.final_state(), v1::SUCCEEDED) << done.job_id() << ": " << done.error().message();
  }
  EXPECT_EQ(FilesUnder(fs::path(options.cache_dir) / "datasets"),
            std::vector<std::string>{Sha256Hex(service.dataset) + ".jsonl"});
}

// The server ends the stream half-way with an error: the job fails as the system's fault (not
// the user's, whatever the code), and no partial file stays in the cache.
TEST(LeaseLoopFetch, AFetchCutShortLeavesNothingBehindAndBlamesTheSystem) {
  FakeWorkerService service;
  service.dataset = Dataset(1 << 20);
  service.fetch_fail_after_bytes = 256 << 10;
  service.fetch_error = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "server is busy");
  auto server = Start(&service);
  LeaseLoopOptions options = Options(server.port, "cut");
  {
    RunningLoop loop(options, FakeRunner(1, std::chrono::milliseconds(1), service.dataset));
    ASSERT_TRUE(CompletionsAtLeast(service, 1));
  }
  std::lock_guard<std::mutex> lock(service.mu);
  const auto& done = service.completions[0];
  EXPECT_EQ(done.final_state(), v1::FAILED);
  EXPECT_EQ(done.error().blame(), v1::JobError::SYSTEM) << done.error().message();
  EXPECT_TRUE(absl::StrContains(done.error().message(), "fetching dataset"))
      << done.error().message();
  EXPECT_EQ(FilesUnder(fs::path(options.cache_dir) / "datasets"), std::vector<std::string>{});
}

// Lowers the file size limit of this process (writes past it fail with EFBIG), as a full disk
// would, and restores it.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &old_);
    rlimit lowered = old_;
    lowered.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lowered);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);  // a write error, not a killed test
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_;
  void (*old_handler_)(int);
};

// Writes that fail on the worker's disk are seen: the fetch fails and leaves nothing, instead of
// a truncated dataset cached under the sha256 of the bytes received.
TEST(LeaseLoopFetch, AFailedWriteIsAnErrorAndNothingIsCached) {
  FakeWorkerService service;
  service.dataset = Dataset(1 << 20);
  auto server = Start(&service);
  LeaseLoopOptions options = Options(server.port, "fsize");
  {
    FileSizeLimit limit(256 << 10);
    RunningLoop loop(options, FakeRunner(1, std::chrono::milliseconds(1), service.dataset));
    ASSERT_TRUE(CompletionsAtLeast(service, 1));
  }
  std::lock_guard<std::mutex> lock(service.mu);
  const auto& done = service.completions[0];
  EXPECT_EQ(done.final_state(), v1::FAILED);
  EXPECT_EQ(done.error().blame(), v1::JobError::SYSTEM) << done.error().message();
  EXPECT_TRUE(absl::StrContains(done.error().message(), "fetching dataset"))
      << done.error().message();
  EXPECT_EQ(FilesUnder(fs::path(options.cache_dir) / "datasets"), std::vector<std::string>{});
}

// A disk full on the server is not the user's fault.
TEST(LeaseLoop, AnUploadRefusedByTheServerIsBlamedOnTheSystem) {
  FakeWorkerService service;
  service.adapter_error =
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "writing the upload failed (disk full?)");
  auto server = Start(&service);
  {
    RunningLoop loop(Options(server.port, "diskfull"), FakeRunner(1, std::chrono::milliseconds(1)));
    ASSERT_TRUE(CompletionsAtLeast(service, 1));
  }
  std::lock_guard<std::mutex> lock(service.mu);
  const auto& done = service.completions[0];
  EXPECT_EQ(done.final_state(), v1::FAILED);
  EXPECT_EQ(done.error().blame(), v1::JobError::SYSTEM) << done.error().message();
  EXPECT_TRUE(absl::StrContains(done.error().message(), "uploading the adapter"))
      << done.error().message();
}

TEST(LeaseLoop, RegisterAdvertisesTheUsableMemory) {
  FakeWorkerService service;
  auto server = Start(&service);
  RunningLoop loop(Options(server.port, "memory"), FakeRunner(1, std::chrono::milliseconds(1)));
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return !service.registrations.empty();
  }));
  const auto memory = UsableMemoryBytes();
  ASSERT_TRUE(memory.ok()) << memory.status();
  std::lock_guard<std::mutex> lock(service.mu);
  ASSERT_EQ(service.registrations[0].devices_size(), 1);
  EXPECT_EQ(service.registrations[0].devices(0).name(), "cpu");
  EXPECT_GT(*memory, 0);
  EXPECT_EQ(service.registrations[0].devices(0).memory_bytes(), *memory);
}

// Attempt 1 trains until released (or stopped); later attempts train 3 steps.
struct GatedRuns {
  std::atomic<int> runs{0};
  std::atomic<int> cancelled{0};
  std::atomic<bool> release{false};
};

JobRunner GatedRunner(GatedRuns* gate) {
  return [gate](const JobInputs& in, train::ProgressSink* sink,
                const std::atomic<bool>* cancelled) -> absl::StatusOr<JobOutputs> {
    ++gate->runs;
    sink->OnPhase(train::Phase::kTraining);
    for (int s = 1; in.attempt == 1 ? !gate->release : s <= 3; ++s) {
      if (*cancelled) {
        ++gate->cancelled;
        return absl::CancelledError("cancelled");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      train::StepMetrics m;
      m.step = s;
      sink->OnStep(m);
    }
    JobOutputs out;
    out.adapter_dir = (fs::path(in.work_dir) / "adapter").string();
    fs::create_directories(out.adapter_dir);
    std::ofstream(fs::path(out.adapter_dir) / "adapter_config.json") << in.attempt;
    return out;
  };
}

bool ReportedStep(FakeWorkerService& service, int attempt, int64_t step) {
  return WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return service.last_report.attempt() == attempt &&
           service.last_report.progress().step() >= step;
  });
}

// The server gave the job to this worker again under a new attempt (the old one stalled past its
// lease): the old attempt stops without a word and the new one runs.
TEST(LeaseLoop, ALeaseOfANewAttemptReplacesTheStaleOne) {
  FakeWorkerService service;
  auto server = Start(&service);
  LeaseLoopOptions options = Options(server.port, "stale");
  options.slots = 2;
  GatedRuns gate;
  RunningLoop loop(options, GatedRunner(&gate));
  ASSERT_TRUE(ReportedStep(service, 1, 3));
  {
    std::lock_guard<std::mutex> lock(service.mu);
    v1::Lease lease;
    lease.set_job_id("job-1");
    lease.set_attempt(2);
    lease.set_training_dataset_sha256(Sha256Hex(service.dataset));
    service.extra_leases.push_back(lease);
  }
  ASSERT_TRUE(CompletionsAtLeast(service, 1, std::chrono::seconds(10)))
      << "the lease of attempt 2 was not taken";
  EXPECT_TRUE(WaitFor([&] { return gate.cancelled == 1; })) << "attempt 1 was not stopped";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a few heartbeats
  std::lock_guard<std::mutex> lock(service.mu);
  ASSERT_EQ(service.completions.size(), 1u);  // attempt 1 stopped without reporting
  EXPECT_EQ(service.completions[0].attempt(), 2);
  EXPECT_EQ(service.completions[0].final_state(), v1::SUCCEEDED);
  EXPECT_EQ(gate.runs, 2);
  EXPECT_EQ(service.adapters.size(), 1u);
}

// After a server restart the lease of the attempt the worker runs comes back: nothing changes.
TEST(LeaseLoop, ALeaseOfTheAttemptItRunsIsANoOp) {
  FakeWorkerService service;
  auto server = Start(&service);
  LeaseLoopOptions options = Options(server.port, "reclaim");
  options.slots = 2;
  GatedRuns gate;
  RunningLoop loop(options, GatedRunner(&gate));
  ASSERT_TRUE(ReportedStep(service, 1, 3));
  int beats_then = 0;
  {
    std::lock_guard<std::mutex> lock(service.mu);
    v1::Lease lease;
    lease.set_job_id("job-1");
    lease.set_attempt(1);
    lease.set_training_dataset_sha256(Sha256Hex(service.dataset));
    service.extra_leases.push_back(lease);
    beats_then = service.beats;
  }
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(service.mu);
    return service.beats >= beats_then + 4;
  }));
  gate.release = true;
  ASSERT_TRUE(CompletionsAtLeast(service, 1));
  std::lock_guard<std::mutex> lock(service.mu);
  EXPECT_EQ(service.completions[0].attempt(), 1);
  EXPECT_EQ(service.completions[0].final_state(), v1::SUCCEEDED);
  EXPECT_EQ(gate.runs, 1);
  EXPECT_EQ(gate.cancelled, 0);
}

// Issue 13: a lease of a gang's rank hands the runner its rank, world, key, rendezvous address
// and timeout. Rank 0's address reaches the server at once (not at the next regular beat), every
// report names the rank and says when it met the others and its collective time, and only rank 0
// uploads the adapter; a rank > 0 reports its end with its rank.
v1::Lease GangLease(const std::string& job, int rank, const std::string& dataset) {
  v1::Lease lease;
  lease.set_job_id(job);
  lease.set_attempt(1);
  lease.set_training_dataset_sha256(Sha256Hex(dataset));
  lease.set_rank(rank);
  lease.set_world_size(2);
  lease.set_rendezvous_key(job + "/attempt-1");
  if (rank > 0) lease.set_rendezvous_address("10.0.0.1:29500");
  lease.set_rendezvous_timeout_ms(4321);
  return lease;
}

JobRunner GangRunner(std::vector<GangInputs>* seen, std::mutex* mu) {
  return [=](const JobInputs& in, train::ProgressSink* sink,
             const std::atomic<bool>* cancelled) -> absl::StatusOr<JobOutputs> {
    {
      std::lock_guard<std::mutex> lock(*mu);
      seen->push_back(in.gang);
    }
    if (in.gang.rank == 0) in.gang.opened(in.gang.advertise_host + ":4242");
    in.gang.joined();
    in.gang.allreduce_seconds(0.5);
    train::StepMetrics m;
    m.step = 1;
    m.total_steps = 1;
    sink->OnStep(m);
    JobOutputs out;
    if (in.gang.rank == 0) {
      out.adapter_dir = (fs::path(in.work_dir) / "adapter").string();
      fs::create_directories(out.adapter_dir);
      std::ofstream(fs::path(out.adapter_dir) / "adapter_config.json") << "{}";
    }
    return out;
  };
}

TEST(LeaseLoopGang, RanksGetTheirRendezvousAndRankZeroAloneUploads) {
  FakeWorkerService service;
  service.jobs = 0;
  service.heartbeat_interval_ms = 60000;  // only early beats can deliver anything in time
  auto server = Start(&service);
  std::vector<GangInputs> seen;
  std::mutex mu;
  LeaseLoopOptions options = Options(server.port, "gang");
  options.slots = 2;
  {
    std::lock_guard<std::mutex> lock(service.mu);
    service.extra_leases.push_back(GangLease("g0", 0, service.dataset));
    service.extra_leases.push_back(GangLease("g1", 1, service.dataset));
  }
  RunningLoop loop(options, GangRunner(&seen, &mu));
  ASSERT_TRUE(CompletionsAtLeast(service, 2, std::chrono::seconds(20)));
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(seen.size(), 2u);
    std::sort(seen.begin(), seen.end(),
              [](const GangInputs& a, const GangInputs& b) { return a.rank < b.rank; });
    EXPECT_EQ(seen[0].world_size, 2);
    EXPECT_EQ(seen[0].key, "g0/attempt-1");
    EXPECT_EQ(seen[0].address, "");
    EXPECT_EQ(seen[0].advertise_host, "127.0.0.1");  // --server is on this machine
    EXPECT_EQ(seen[0].timeout_ms, 4321);
    EXPECT_EQ(seen[1].rank, 1);
    EXPECT_EQ(seen[1].address, "10.0.0.1:29500");
  }
  std::lock_guard<std::mutex> lock(service.mu);
  bool address = false, joined0 = false, joined1 = false;
  for (const auto& r : service.reports) {
    if (r.job_id() == "g0") {
      EXPECT_EQ(r.rank(), 0);
      address = address || r.rendezvous_address() == "127.0.0.1:4242";
      joined0 = joined0 || r.joined();
    } else {
      EXPECT_EQ(r.rank(), 1);
      joined1 = joined1 || r.joined();
    }
  }
  EXPECT_TRUE(address);
  EXPECT_TRUE(joined0);
  EXPECT_TRUE(joined1);
  ASSERT_EQ(service.completions.size(), 2u);
  for (const auto& c : service.completions) {
    EXPECT_EQ(c.final_state(), v1::SUCCEEDED) << c.error().message();
    EXPECT_EQ(c.last_report().rank(), c.job_id() == "g0" ? 0 : 1);
    EXPECT_DOUBLE_EQ(c.last_report().allreduce_seconds(), 0.5);
  }
  EXPECT_EQ(service.adapters.size(), 1u);  // rank 0's
}

}  // namespace
}  // namespace peftd::worker
