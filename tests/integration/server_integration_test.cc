// The real `peftd` on 127.0.0.1 port 0, driven through JobService by a client stub and through
// WorkerService by a scripted fake worker: the whole life of a job, kill -9 and restart, 50
// concurrent clients with repeated request ids, bad datasets and specs, tokens, SIGTERM.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_grpc.h"
#include "common/tar.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "peftd/v1/worker.grpc.pb.h"
#include "tests/integration/fake_worker.h"
#include "tests/integration/peftd_process.h"
#include "tests/server/test_model.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::FakeWorker;
using testing::PeftdProcess;

const char kDataset[] =
    "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n"
    "{\"prompt\": \"3+3=\", \"completion\": \"6\"}\n";

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / absl::StrCat("peftd_it_", name, "_", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "models" / "tiny");
  std::ofstream(dir / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
  return dir;
}

std::vector<std::string> FastArgs(const fs::path& dir) {
  return {"--model-root=" + (dir / "models").string(), "--heartbeat-interval=200ms",
          "--lease-timeout=3s", "--restart-grace=4s"};
}

// GET http://HOST:PORT/metrics with a plain socket (the Prometheus text the server exposes).
std::string Scrape(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  return response;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string Slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Deadline(grpc::ClientContext* ctx, int seconds = 30) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

grpc::Status Upload(v1::JobService::Stub& stub, const std::string& bytes, v1::Dataset* out,
                    const std::string& filename = "train.jsonl") {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto writer = stub.UploadDataset(&ctx, out);
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_filename(filename);
  header.mutable_header()->set_size_bytes(static_cast<int64_t>(bytes.size()));
  header.mutable_header()->set_sha256(Sha256Hex(bytes));
  writer->Write(header);
  for (size_t off = 0; off < bytes.size(); off += 7) {  // small chunks: lines span chunks
    v1::UploadDatasetRequest chunk;
    chunk.set_chunk(bytes.substr(off, 7));
    writer->Write(chunk);
  }
  writer->WritesDone();
  return writer->Finish();
}

v1::CreateJobRequest JobRequest(const std::string& dataset_id, const std::string& request_id = "") {
  v1::CreateJobRequest req;
  req.set_request_id(request_id);
  v1::JobSpec* s = req.mutable_spec();
  s->set_base_model("tiny");
  s->set_method(v1::LORA);
  s->set_training_dataset_id(dataset_id);
  s->set_max_steps(4);
  return req;
}

v1::Job Get(v1::JobService::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::GetJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  EXPECT_TRUE(stub.GetJob(&ctx, req, &job).ok());
  return job;
}

std::vector<v1::Job> ListAll(v1::JobService::Stub& stub) {
  std::vector<v1::Job> all;
  v1::ListJobsRequest req;
  req.set_page_size(7);
  do {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::ListJobsResponse resp;
    EXPECT_TRUE(stub.ListJobs(&ctx, req, &resp).ok());
    for (const auto& j : resp.jobs()) all.push_back(j);
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return all;
}

TEST(PeftdServer, SubmitLeaseProgressUploadSucceedDownload) {
  const fs::path dir = FreshDir("life");
  auto args = FastArgs(dir);
  args.push_back("--port-file=" + (dir / "ports").string());
  PeftdProcess server((dir / "data").string(), args);
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  {
    std::ifstream ports(dir / "ports");
    std::string line;
    std::getline(ports, line);
    EXPECT_EQ("peftd: listening " + line + "\n", server.first_line());
  }
  EXPECT_EQ(fs::status(dir / "data").permissions() & fs::perms::all, fs::perms::owner_all);
  auto jobs = v1::JobService::NewStub(server.Channel());

  v1::Dataset ds, again;
  ASSERT_TRUE(Upload(*jobs, kDataset, &ds).ok());
  EXPECT_EQ(ds.id(), "ds-" + Sha256Hex(kDataset).substr(0, 16));
  EXPECT_EQ(ds.lines(), 2);
  EXPECT_EQ(ds.format(), "prompt_completion");
  ASSERT_TRUE(Upload(*jobs, kDataset, &again, "same-bytes.jsonl").ok());
  EXPECT_EQ(again.id(), ds.id());

  v1::Job job;
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ASSERT_TRUE(jobs->CreateJob(&ctx, JobRequest(ds.id(), "life-1"), &job).ok());
  }
  EXPECT_EQ(job.state(), v1::QUEUED);
  EXPECT_EQ(job.spec().lora().r(), 8);  // defaults applied and stored

  FakeWorker worker(server.Channel(), "w-life");
  ASSERT_TRUE(worker.Register().ok());
  v1::HeartbeatResponse hb;
  ASSERT_TRUE(worker.Heartbeat(1, {}, &hb).ok());
  ASSERT_EQ(hb.leases_size(), 1);
  const v1::Lease lease = hb.leases(0);
  EXPECT_EQ(lease.job_id(), job.id());
  EXPECT_EQ(lease.attempt(), 1);
  EXPECT_EQ(lease.training_dataset_sha256(), ds.sha256());
  std::string fetched;
  ASSERT_TRUE(worker.Fetch(ds.sha256(), &fetched).ok());
  EXPECT_EQ(fetched, kDataset);

  ASSERT_TRUE(worker.Heartbeat(0, {FakeWorker::Report(lease, 2)}, &hb).ok());
  EXPECT_EQ(hb.drop_job_ids_size(), 0);
  // The heartbeat's numbers are on /metrics while the job runs.
  const std::string live = Scrape(server.metrics_address());
  EXPECT_TRUE(absl::StrContains(live, "peftd_train_loss{job_id=\"" + job.id()) ||
              absl::StrContains(live, "job_id=\"" + job.id() + "\""))
      << live;
  EXPECT_TRUE(absl::StrContains(live, "peftd_jobs{state=\"running\"} 1")) << live;
  ASSERT_TRUE(worker.Upload(true, job.id(), 1, 2, "checkpoint-bytes").ok());
  // A body that does not match its announced sha256 is refused and not recorded.
  EXPECT_EQ(worker.Upload(true, job.id(), 1, 3, "other", Sha256Hex("x")).error_code(),
            grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(Get(*jobs, job.id()).progress().step(), 2);
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::ListCheckpointsRequest req;
    req.set_job_id(job.id());
    v1::ListCheckpointsResponse resp;
    ASSERT_TRUE(jobs->ListCheckpoints(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.checkpoints_size(), 1);
    EXPECT_EQ(resp.checkpoints(0).step(), 2);
  }

  // A real adapter folder, tarred as the worker does.
  const fs::path adapter_dir = dir / "adapter";
  fs::create_directories(adapter_dir);
  std::ofstream(adapter_dir / "adapter_config.json") << "{\"peft_type\": \"LORA\"}";
  std::ofstream(adapter_dir / "adapter_model.safetensors") << std::string(3 << 20, 'w');
  std::string archive;
  ASSERT_TRUE(WriteTar(adapter_dir.string(), [&](absl::string_view bytes) {
                archive.append(bytes.data(), bytes.size());
                return absl::OkStatus();
              }).ok());
  worker.Finish(lease, archive);

  v1::Job done = Get(*jobs, job.id());
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  // ...and dropped once it ended.
  const std::string after = Scrape(server.metrics_address());
  EXPECT_FALSE(absl::StrContains(after, "job_id=\"" + job.id() + "\"")) << after;
  EXPECT_TRUE(
      absl::StrContains(after, "peftd_jobs_finished_total{method=\"lora\",state=\"succeeded\"} 1"))
      << after;
  EXPECT_EQ(done.adapter_sha256(), Sha256Hex(archive));

  // WatchJob from the start replays every event and ends with the final state.
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::WatchJobRequest req;
    req.set_job_id(job.id());
    auto reader = jobs->WatchJob(&ctx, req);
    v1::JobEvent e;
    std::vector<v1::JobEvent> events;
    while (reader->Read(&e)) events.push_back(e);
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().state(), v1::SUCCEEDED);
    bool saw_worker_log = false;
    for (size_t i = 0; i < events.size(); ++i) {
      if (i > 0) EXPECT_GT(events[i].id(), events[i - 1].id());
      saw_worker_log |= events[i].message() == "worker log at step 2";
    }
    EXPECT_TRUE(saw_worker_log);
  }

  // DownloadAdapter: header first, then the bytes whose sha256 it announced.
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::DownloadAdapterRequest req;
    req.set_job_id(job.id());
    auto reader = jobs->DownloadAdapter(&ctx, req);
    v1::DownloadAdapterChunk chunk;
    ASSERT_TRUE(reader->Read(&chunk));
    ASSERT_TRUE(chunk.has_header());
    const auto header = chunk.header();
    std::string bytes;
    while (reader->Read(&chunk)) bytes += chunk.chunk();
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(header.size_bytes(), static_cast<int64_t>(bytes.size()));
    EXPECT_EQ(header.sha256(), Sha256Hex(bytes));
    EXPECT_EQ(bytes, archive);
    const fs::path out = dir / "downloaded";
    const fs::path file = dir / "downloaded.tar";
    std::ofstream(file, std::ios::binary) << bytes;
    ASSERT_TRUE(ExtractTarFile(file.string(), out.string()).ok());
    EXPECT_EQ(fs::file_size(out / "adapter_model.safetensors"), 3u << 20);
  }

  // Graceful stop on SIGTERM.
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(PeftdServer, KillDashNineAndRestartKeepsEveryJobAndTheQueueDrains) {
  const fs::path dir = FreshDir("restart");
  PeftdProcess server((dir / "data").string(), FastArgs(dir));
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  auto jobs = v1::JobService::NewStub(server.Channel());
  v1::Dataset ds;
  ASSERT_TRUE(Upload(*jobs, kDataset, &ds).ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::Job job;
    ASSERT_TRUE(jobs->CreateJob(&ctx, JobRequest(ds.id()), &job).ok());
    ids.push_back(job.id());
  }
  FakeWorker keeper(server.Channel(), "w-keeper");  // comes back and re-claims
  FakeWorker goner(server.Channel(), "w-goner");    // never comes back
  ASSERT_TRUE(keeper.Register().ok());
  ASSERT_TRUE(goner.Register().ok());
  v1::HeartbeatResponse hb;
  ASSERT_TRUE(keeper.Heartbeat(1, {}, &hb).ok());
  ASSERT_EQ(hb.leases_size(), 1);
  const v1::Lease kept = hb.leases(0);
  ASSERT_TRUE(goner.Heartbeat(1, {}, &hb).ok());
  ASSERT_EQ(hb.leases_size(), 1);
  const v1::Lease lost = hb.leases(0);
  ASSERT_TRUE(goner.Upload(true, lost.job_id(), 1, 2, "ckpt-of-the-goner").ok());

  server.Kill();
  ASSERT_TRUE(server.Start(&error)) << error;
  jobs = v1::JobService::NewStub(server.Channel());
  const auto all = ListAll(*jobs);
  ASSERT_EQ(all.size(), ids.size());
  std::set<std::string> listed;
  for (const auto& j : all) listed.insert(j.id());
  for (const auto& id : ids) EXPECT_TRUE(listed.count(id)) << id;
  EXPECT_EQ(Get(*jobs, kept.job_id()).state(), v1::RUNNING);
  EXPECT_EQ(Get(*jobs, lost.job_id()).state(), v1::RUNNING);

  FakeWorker keeper2(server.Channel(), "w-keeper");
  // The restarted server does not know the worker until it registers again.
  EXPECT_EQ(keeper2.Heartbeat(0, {}, &hb).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(keeper2.Register({kept.job_id()}).ok());
  ASSERT_TRUE(keeper2.Heartbeat(0, {FakeWorker::Report(kept, 3)}, &hb).ok());
  EXPECT_EQ(hb.drop_job_ids_size(), 0);

  // After the restart grace the goner's job is requeued as attempt 2, resuming from step 2.
  ASSERT_TRUE(WaitFor([&] {
    v1::HeartbeatResponse r;
    keeper2.Heartbeat(0, {FakeWorker::Report(kept, 3)}, &r);
    return Get(*jobs, lost.job_id()).state() == v1::QUEUED;
  })) << "the job of the worker that did not come back was never requeued";
  EXPECT_EQ(Get(*jobs, lost.job_id()).attempt(), 2);
  // The goner's stale attempt is fenced off.
  FakeWorker goner2(server.Channel(), "w-goner");
  ASSERT_TRUE(goner2.Register({lost.job_id()}).ok());
  EXPECT_EQ(goner2.Upload(true, lost.job_id(), 1, 3, "stale").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  keeper2.Finish(kept, "adapter-kept");
  // Drain the queue with one worker: every job ends SUCCEEDED.
  FakeWorker drain(server.Channel(), "w-drain");
  ASSERT_TRUE(drain.Register().ok());
  int leased = 0;
  while (true) {
    v1::HeartbeatResponse r;
    ASSERT_TRUE(drain.Heartbeat(1, {}, &r).ok());
    if (r.leases_size() == 0) break;
    const v1::Lease l = r.leases(0);
    if (l.job_id() == lost.job_id()) {
      EXPECT_EQ(l.attempt(), 2);
      EXPECT_EQ(l.resume_from().step(), 2);
      std::string ckpt;
      ASSERT_TRUE(drain.FetchCheckpoint(l, &ckpt).ok());
      EXPECT_EQ(ckpt, "ckpt-of-the-goner");
    }
    drain.Finish(l, "adapter-" + l.job_id());
    ++leased;
  }
  EXPECT_EQ(leased, static_cast<int>(ids.size()) - 1);
  for (const auto& id : ids) EXPECT_EQ(Get(*jobs, id).state(), v1::SUCCEEDED) << id;
}

TEST(PeftdServer, FiftyConcurrentClientsWithRepeatedRequestIdsMakeOneJobPerId) {
  const fs::path dir = FreshDir("fifty");
  PeftdProcess server((dir / "data").string(), FastArgs(dir));
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  v1::Dataset ds;
  ASSERT_TRUE(Upload(*v1::JobService::NewStub(server.Channel()), kDataset, &ds).ok());
  constexpr int kClients = 50, kRequestIds = 10;
  std::vector<std::vector<std::string>> got(kClients, std::vector<std::string>(kRequestIds));
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = v1::JobService::NewStub(server.Channel());
      for (int r = 0; r < kRequestIds; ++r) {
        const int rid = (r + c) % kRequestIds;
        grpc::ClientContext ctx;
        Deadline(&ctx, 60);
        v1::Job job;
        grpc::Status st =
            stub->CreateJob(&ctx, JobRequest(ds.id(), absl::StrCat("req-", rid)), &job);
        got[c][rid] = st.ok() ? job.id() : "error: " + st.error_message();
      }
    });
  }
  for (auto& t : clients) t.join();
  auto stub = v1::JobService::NewStub(server.Channel());
  EXPECT_EQ(ListAll(*stub).size(), static_cast<size_t>(kRequestIds));
  for (int r = 0; r < kRequestIds; ++r) {
    EXPECT_FALSE(absl::StartsWith(got[0][r], "error")) << got[0][r];
    for (int c = 1; c < kClients; ++c) EXPECT_EQ(got[c][r], got[0][r]);
  }
  // The same request id with another spec is refused, naming the field.
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto req = JobRequest(ds.id(), "req-0");
  req.mutable_spec()->set_max_steps(99);
  v1::Job job;
  grpc::Status st = stub->CreateJob(&ctx, req, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "request_id")) << st.error_message();
}

std::vector<std::pair<std::string, std::string>> Violations(const grpc::Status& st) {
  google::rpc::Status rich;
  std::vector<std::pair<std::string, std::string>> out;
  if (!rich.ParseFromString(st.error_details())) return out;
  for (const auto& any : rich.details()) {
    google::rpc::BadRequest br;
    if (any.type_url() == "type.googleapis.com/google.rpc.BadRequest" &&
        br.ParseFromString(any.value())) {
      for (const auto& v : br.field_violations()) out.emplace_back(v.field(), v.description());
    }
  }
  return out;
}

TEST(PeftdServer, BadDatasetsAndBadSpecsAreRefusedByLineAndFieldAndNothingIsStored) {
  const fs::path dir = FreshDir("bad");
  auto args = FastArgs(dir);
  args.push_back("--max-dataset-bytes=4KiB");
  PeftdProcess server((dir / "data").string(), args);
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  auto jobs = v1::JobService::NewStub(server.Channel());
  // The server may offer example datasets at startup: count what is there before.
  auto count_datasets = [&] {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::ListDatasetsResponse resp;
    EXPECT_TRUE(jobs->ListDatasets(&ctx, v1::ListDatasetsRequest(), &resp).ok());
    return resp.datasets_size();
  };
  auto count_blobs = [&] {
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir / "data" / "blobs")) files += e.exists();
    return files;
  };
  const int datasets_before = count_datasets();
  const int blobs_before = count_blobs();

  const std::string bad =
      "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
      "{not json\n"
      "{\"prompt\": \"c\"}\n"
      "{\"prompt\": \"d\", \"completion\": \"e\"}\n"
      "{\"text\": \"a text record\"}\n";
  v1::Dataset ds;
  grpc::Status st = Upload(*jobs, bad, &ds, "bad.jsonl");
  ASSERT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "bad.jsonl: 3 bad lines"))
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "line 2: invalid JSON")) << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "line 3: field \"completion\": missing"))
      << st.error_message();
  const auto violations = Violations(st);
  ASSERT_EQ(violations.size(), 3u);
  EXPECT_EQ(violations[0].first, "line 2");
  EXPECT_EQ(violations[1].first, "line 3: completion");
  EXPECT_EQ(violations[1].second, "line 3: field \"completion\": missing");
  EXPECT_EQ(violations[2].first, "line 5");
  // Empty, and over the size limit.
  EXPECT_EQ(Upload(*jobs, "", &ds).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::string big;
  while (big.size() <= 4096) big += kDataset;
  st = Upload(*jobs, big, &ds);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "--max-dataset-bytes")) << st.error_message();
  EXPECT_EQ(count_datasets(), datasets_before);
  EXPECT_EQ(count_blobs(), blobs_before) << "a refused upload left bytes behind";

  ASSERT_TRUE(Upload(*jobs, kDataset, &ds).ok());
  struct Case {
    std::function<void(v1::JobSpec*)> mutate;
    grpc::StatusCode code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec* s) { s->mutable_lora()->set_r(-1); }, grpc::StatusCode::INVALID_ARGUMENT,
       "lora.r"},
      {[](v1::JobSpec* s) { s->set_base_model("../../etc"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "base_model"},
      {[](v1::JobSpec* s) { s->set_base_model("no-such-model"); }, grpc::StatusCode::NOT_FOUND,
       "base_model"},
      {[](v1::JobSpec* s) { s->set_training_dataset_id("ds-0123456789abcdef"); },
       grpc::StatusCode::NOT_FOUND, "training_dataset_id"},
      {[](v1::JobSpec* s) { s->set_method(v1::METHOD_UNSPECIFIED); },
       grpc::StatusCode::INVALID_ARGUMENT, "method"},
  };
  for (const auto& c : cases) {
    auto req = JobRequest(ds.id());
    c.mutate(req.mutable_spec());
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::Job job;
    grpc::Status s = jobs->CreateJob(&ctx, req, &job);
    EXPECT_EQ(s.error_code(), c.code) << c.field << ": " << s.error_message();
    EXPECT_TRUE(absl::StartsWith(s.error_message(), c.field)) << s.error_message();
    const auto v = Violations(s);
    ASSERT_EQ(v.size(), 1u) << c.field;
    EXPECT_EQ(v[0].first, c.field);
  }
  EXPECT_TRUE(ListAll(*jobs).empty());
}

TEST(PeftdServer, UsersAndWorkersHoldSeparateTokensAndHealthIsOpen) {
  const fs::path dir = FreshDir("token");
  auto args = FastArgs(dir);
  args.push_back("--auth-token=s3cret");
  args.push_back("--worker-token=w0rker");
  PeftdProcess server((dir / "data").string(), args);
  std::string error;
  ASSERT_TRUE(server.Start(&error)) << error;
  auto jobs = v1::JobService::NewStub(server.Channel());
  auto list = [&](const std::string& token) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::ListJobsResponse resp;
    return jobs->ListJobs(&ctx, v1::ListJobsRequest(), &resp).error_code();
  };
  EXPECT_EQ(list(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(list("w0rker"), grpc::StatusCode::UNAUTHENTICATED);  // a worker cannot read jobs
  EXPECT_EQ(list("s3cret"), grpc::StatusCode::OK);
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ctx.AddMetadata("authorization", "Bearer wrong");
    v1::Dataset ds;
    auto writer = jobs->UploadDataset(&ctx, &ds);
    v1::UploadDatasetRequest header;
    header.mutable_header()->set_filename("x.jsonl");
    writer->Write(header);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // A user's token cannot take leases, upload adapters or complete jobs; the workers' can.
  EXPECT_EQ(FakeWorker(server.Channel(), "w-none").Register().error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(FakeWorker(server.Channel(), "w-user", "s3cret").Register().error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(FakeWorker(server.Channel(), "w-user", "s3cret")
                .Upload(false, "job-x", 1, 0, "bytes")
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(FakeWorker(server.Channel(), "w-ok", "w0rker").Register().ok());

  // Reflection needs the users' token; health needs none.
  auto reflect = [&](const std::string& token,
                     grpc::reflection::v1alpha::ServerReflectionResponse* out) {
    auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(server.Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx);
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    auto stream = stub->ServerReflectionInfo(&ctx);
    grpc::reflection::v1alpha::ServerReflectionRequest req;
    req.set_file_containing_symbol("peftd.v1.JobService");
    stream->Write(req);
    stream->WritesDone();
    while (stream->Read(out)) {
    }
    return stream->Finish().error_code();
  };
  grpc::reflection::v1alpha::ServerReflectionResponse answer;
  EXPECT_EQ(reflect("", &answer), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(reflect("w0rker", &answer), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(reflect("s3cret", &answer), grpc::StatusCode::OK);
  ASSERT_GE(answer.file_descriptor_response().file_descriptor_proto_size(), 1);
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(answer.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.name(), "peftd/v1/jobs.proto");
  {
    grpc::GenericStub health(server.Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::ByteBuffer request, response;  // an empty HealthCheckRequest: the server as a whole
    grpc::Slice empty("", 0);
    request = grpc::ByteBuffer(&empty, 1);
    grpc::Status st;
    bool done = false;
    std::mutex mu;
    std::condition_variable cv;
    health.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                     [&](grpc::Status s) {
                       std::lock_guard<std::mutex> lock(mu);
                       st = s;
                       done = true;
                       cv.notify_all();
                     });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
}

TEST(PeftdServer, RefusesASecondServerOnTheSameDataDirAndAnOpenListenWithoutAToken) {
  const fs::path dir = FreshDir("exclusive");
  PeftdProcess first((dir / "data").string(), FastArgs(dir));
  std::string error;
  ASSERT_TRUE(first.Start(&error)) << error;
  PeftdProcess second((dir / "data").string(), FastArgs(dir));
  second.set_log_file((dir / "second.log").string());
  EXPECT_FALSE(second.Start(&error));
  const std::string log = Slurp(dir / "second.log");
  EXPECT_TRUE(absl::StrContains(log, absl::StrCat("in use by another peftd (pid ", first.pid())))
      << log;
  // The first one is unharmed.
  auto jobs = v1::JobService::NewStub(first.Channel());
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::ListJobsResponse resp;
  EXPECT_TRUE(jobs->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());

  // Every interface, no token: refused unless --insecure, which then warns.
  auto open = FastArgs(dir);
  open.push_back("--listen=0.0.0.0:0");
  PeftdProcess refused((dir / "data2").string(), open);
  refused.set_log_file((dir / "refused.log").string());
  EXPECT_FALSE(refused.Start(&error));
  EXPECT_TRUE(absl::StrContains(Slurp(dir / "refused.log"), "--insecure"));
  open.push_back("--insecure");
  PeftdProcess insecure((dir / "data2").string(), open);
  insecure.set_log_file((dir / "insecure.log").string());
  ASSERT_TRUE(insecure.Start(&error)) << error;
  EXPECT_TRUE(absl::StrContains(Slurp(dir / "insecure.log"),
                                "accepts connections from other machines with no user token"));
  EXPECT_EQ(insecure.Terminate(), 0);
  EXPECT_EQ(first.Terminate(), 0);
}

}  // namespace
}  // namespace peftd
