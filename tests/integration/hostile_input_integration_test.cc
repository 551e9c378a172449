// Hostile input against the real `peftd`, as an outside client would send it (issue 12): bad job
// specs (tests/integration/hostile/create_job.cases plus a few generated ones too big for a file),
// bad datasets, bad model folders, and a client posing as a worker with bad uploads and reports.
// Every request gets its documented status code within a 1 s deadline (uploads of megabytes get
// 10 s), the server keeps serving after each one, and its resident memory stays bounded. The test
// prints one JSON line with the counts and the server's RSS before and after.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "google/protobuf/text_format.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "peftd/v1/worker.grpc.pb.h"
#include "tests/integration/e2e_support.h"
#include "tests/integration/fake_worker.h"
#include "tests/integration/peftd_process.h"

namespace peftd {
namespace {

namespace fs = std::filesystem;
using testing::FakeWorker;
using testing::PeftdProcess;

constexpr char kWorkerToken[] = "hostile-suite-worker-token";
constexpr int kFastDeadlineMs = 1000;
constexpr int kUploadDeadlineMs = 10000;

// VmRSS of `pid` in KiB, -1 when unknown.
int64_t RssKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      int64_t kb = -1;
      std::string digits;
      for (char c : line) {
        if (std::isdigit(static_cast<unsigned char>(c))) digits += c;
      }
      return absl::SimpleAtoi(digits, &kb) ? kb : -1;
    }
  }
  return -1;
}

bool ParseCode(const std::string& name, grpc::StatusCode* code) {
  static const std::map<std::string, grpc::StatusCode> kCodes = {
      {"OK", grpc::StatusCode::OK},
      {"INVALID_ARGUMENT", grpc::StatusCode::INVALID_ARGUMENT},
      {"NOT_FOUND", grpc::StatusCode::NOT_FOUND},
      {"ALREADY_EXISTS", grpc::StatusCode::ALREADY_EXISTS},
      {"FAILED_PRECONDITION", grpc::StatusCode::FAILED_PRECONDITION},
      {"RESOURCE_EXHAUSTED", grpc::StatusCode::RESOURCE_EXHAUSTED},
      {"OUT_OF_RANGE", grpc::StatusCode::OUT_OF_RANGE},
      {"UNAUTHENTICATED", grpc::StatusCode::UNAUTHENTICATED},
      {"PERMISSION_DENIED", grpc::StatusCode::PERMISSION_DENIED},
  };
  auto it = kCodes.find(name);
  if (it == kCodes.end()) return false;
  *code = it->second;
  return true;
}

struct Case {
  std::string name;
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string text;
  std::string request;  // text format
};

std::vector<Case> ReadCases(const fs::path& path) {
  std::vector<Case> cases;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "#")) continue;
    if (absl::StartsWith(line, "case ")) {
      Case c;
      std::istringstream words(line.substr(5));
      std::string code;
      words >> c.name >> code;
      EXPECT_TRUE(ParseCode(code, &c.code)) << line;
      const size_t q = line.find('"');
      c.text = line.substr(q + 1, line.rfind('"') - q - 1);
      cases.push_back(c);
    } else if (!cases.empty()) {
      cases.back().request += line + "\n";
    }
  }
  return cases;
}

class HostileInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::FreshTestDir("hostile"));
    const fs::path models = *dir_ / "models";
    const testing::RunResult made = testing::RunCommand(
        {testing::kWorker, "make-tiny-model", (models / "tiny-llama").string()});
    ASSERT_EQ(made.exit_code, 0) << made.Describe();
    // Model folders a careless or hostile operator could leave in the root.
    fs::create_directories(models / "broken-config");
    std::ofstream(models / "broken-config" / "config.json") << "{\"architectures\": [\"Llama";
    fs::create_directories(models / "absurd-config");
    std::ofstream(models / "absurd-config" / "config.json")
        << "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
           "\"vocab_size\": 32000, \"hidden_size\": -64, \"intermediate_size\": 128, "
           "\"num_hidden_layers\": 1000000000000, \"num_attention_heads\": 4}";
    fs::create_symlink("/etc", models / "escape");
    server_ =
        new PeftdProcess((*dir_ / "data").string(),
                         {"--model-root=" + models.string(), "--local-workers=0",
                          "--max-dataset-bytes=1MiB", "--heartbeat-interval=200ms",
                          "--lease-timeout=3s", std::string("--worker-token=") + kWorkerToken});
    server_->set_log_file((*dir_ / "peftd.log").string());
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    rss_before_kib_ = RssKib(server_->pid());
  }
  static void TearDownTestSuite() {
    const int64_t rss_after = server_ != nullptr ? RssKib(server_->pid()) : -1;
    std::cout << "{\"bench\": \"hostile_input\", \"inputs\": " << inputs_
              << ", \"refused\": " << refused_ << ", \"max_latency_ms\": " << max_latency_ms_
              << ", \"server_rss_before_kib\": " << rss_before_kib_
              << ", \"server_rss_after_kib\": " << rss_after << "}" << std::endl;
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Terminate(), 0) << "peftd did not stop in order after the hostile suite";
    }
    delete server_;
    server_ = nullptr;
    fs::remove_all(*dir_);
  }

  void TearDown() override {
    // After every test: still serving, memory bounded.
    ASSERT_TRUE(Serving()) << testing::ReadFile(*dir_ / "peftd.log");
    const int64_t rss = RssKib(server_->pid());
    EXPECT_LT(rss, rss_before_kib_ + (256 << 10))
        << "peftd grew from " << rss_before_kib_ << " KiB to " << rss << " KiB";
  }

  static bool Serving() {
    auto stub = v1::JobService::NewStub(server_->Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::ListJobsResponse resp;
    return stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok();
  }

  static void Deadline(grpc::ClientContext* ctx, int ms) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
  }

  // Counts one hostile input and checks its answer.
  static void Expect(const std::string& what, const grpc::Status& st, grpc::StatusCode code,
                     const std::string& text, std::chrono::steady_clock::time_point started) {
    ++inputs_;
    const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - started)
                           .count();
    max_latency_ms_ = std::max(max_latency_ms_, ms);
    EXPECT_EQ(st.error_code(), code) << what << ": " << st.error_message();
    EXPECT_TRUE(absl::StrContains(st.error_message(), text))
        << what << ": '" << st.error_message() << "' lacks '" << text << "'";
    if (!st.ok()) ++refused_;
  }

  static std::string DatasetId() {
    static std::string id;
    if (!id.empty()) return id;
    std::string bytes;
    for (int i = 0; i < 20; ++i) absl::StrAppend(&bytes, "{\"text\": \"hello world ", i, "\"}\n");
    v1::Dataset ds;
    EXPECT_TRUE(UploadDataset(bytes, "ok.jsonl", &ds).ok());
    id = ds.id();
    return id;
  }

  static grpc::Status UploadDataset(const std::string& bytes, const std::string& filename,
                                    v1::Dataset* out, bool send_header = true) {
    auto stub = v1::JobService::NewStub(server_->Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx, kUploadDeadlineMs);
    auto writer = stub->UploadDataset(&ctx, out);
    if (send_header) {
      v1::UploadDatasetRequest header;
      header.mutable_header()->set_filename(filename);
      header.mutable_header()->set_size_bytes(static_cast<int64_t>(bytes.size()));
      writer->Write(header);
    }
    for (size_t off = 0; off < bytes.size(); off += (512 << 10)) {
      v1::UploadDatasetRequest chunk;
      chunk.set_chunk(bytes.substr(off, 512 << 10));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  static v1::CreateJobRequest BaseRequest() {
    v1::CreateJobRequest req;
    v1::JobSpec* s = req.mutable_spec();
    s->set_base_model("tiny-llama");
    s->set_method(v1::LORA);
    s->set_training_dataset_id(DatasetId());
    s->set_max_steps(10);
    return req;
  }

  static grpc::Status Create(const v1::CreateJobRequest& req, v1::Job* job = nullptr) {
    auto stub = v1::JobService::NewStub(server_->Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::Job ignored;
    return stub->CreateJob(&ctx, req, job != nullptr ? job : &ignored);
  }

  static fs::path* dir_;
  static PeftdProcess* server_;
  static int64_t rss_before_kib_;
  static int inputs_;
  static int refused_;
  static int64_t max_latency_ms_;
};

fs::path* HostileInput::dir_ = nullptr;
PeftdProcess* HostileInput::server_ = nullptr;
int64_t HostileInput::rss_before_kib_ = -1;
int HostileInput::inputs_ = 0;
int HostileInput::refused_ = 0;
int64_t HostileInput::max_latency_ms_ = 0;

TEST_F(HostileInput, EveryBadSpecOfTheCaseFileIsRefusedNamingItsField) {
  const std::vector<Case> cases =
      ReadCases(PEFTD_SOURCE_DIR "/tests/integration/hostile/create_job.cases");
  ASSERT_GE(cases.size(), 50u);
  for (const Case& c : cases) {
    v1::CreateJobRequest overlay;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(c.request, &overlay))
        << c.name << ":\n"
        << c.request;
    v1::CreateJobRequest req = BaseRequest();
    req.MergeFrom(overlay);
    const auto started = std::chrono::steady_clock::now();
    Expect(c.name, Create(req), c.code, c.text, started);
  }
  // Nothing of it was stored.
  auto stub = v1::JobService::NewStub(server_->Channel());
  grpc::ClientContext ctx;
  Deadline(&ctx, kFastDeadlineMs);
  v1::ListJobsResponse resp;
  ASSERT_TRUE(stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).ok());
  EXPECT_EQ(resp.jobs_size(), 0);
}

TEST_F(HostileInput, GeneratedSpecsTooBigForTheCaseFile) {
  struct Generated {
    std::string name;
    v1::CreateJobRequest req;
    grpc::StatusCode code;
    std::string text;
  };
  std::vector<Generated> all;
  {
    // Killed peftd with SIGSEGV once (std::regex recursion).
    v1::CreateJobRequest r = BaseRequest();
    r.mutable_spec()->add_target_modules("re:" + std::string(50000, '(') + std::string(50000, ')'));
    all.push_back(
        {"50k nested groups", r, grpc::StatusCode::INVALID_ARGUMENT, "target_modules[0]"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    r.mutable_spec()->add_target_modules(std::string(1 << 20, 'q'));
    all.push_back(
        {"1 MiB module name", r, grpc::StatusCode::INVALID_ARGUMENT, "target_modules[0]"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    for (int i = 0; i < 10000; ++i) r.mutable_spec()->add_target_modules("q_proj");
    all.push_back(
        {"10,000 target modules", r, grpc::StatusCode::INVALID_ARGUMENT, "target_modules"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    for (int i = 0; i < 10000; ++i) r.mutable_spec()->add_layers_to_transform(i % 2);
    all.push_back({"10,000 layers", r, grpc::StatusCode::INVALID_ARGUMENT, "layers_to_transform"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    r.set_request_id(std::string(10000, 'r'));
    all.push_back(
        {"10k-character request id", r, grpc::StatusCode::INVALID_ARGUMENT, "request_id"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    r.set_display_name(std::string(100000, 'n'));
    all.push_back({"100k-character name", r, grpc::StatusCode::INVALID_ARGUMENT, "display_name"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    for (int i = 0; i < 100; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
    all.push_back({"100 labels", r, grpc::StatusCode::INVALID_ARGUMENT, "labels"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    r.mutable_spec()->set_base_model(std::string(100000, 'm'));
    all.push_back(
        {"100k-character model name", r, grpc::StatusCode::INVALID_ARGUMENT, "base_model"});
  }
  {
    v1::CreateJobRequest r = BaseRequest();
    for (int i = 0; i < 1000; ++i) r.mutable_spec()->add_label_names(std::string(1000, 'l'));
    r.mutable_spec()->set_task(v1::SEQ_CLS);
    r.mutable_spec()->set_num_labels(1000);
    all.push_back({"1000 long label names", r, grpc::StatusCode::INVALID_ARGUMENT, "label"});
  }
  for (const Generated& g : all) {
    const auto started = std::chrono::steady_clock::now();
    Expect(g.name, Create(g.req), g.code, g.text, started);
  }
}

TEST_F(HostileInput, BadReadsAndListsAreRefusedOrBounded) {
  auto stub = v1::JobService::NewStub(server_->Channel());
  {
    v1::ListJobsRequest req;  // once past SQLite's variable limit
    for (int i = 0; i < 40000; ++i) req.add_states(v1::QUEUED);
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::ListJobsResponse resp;
    const auto started = std::chrono::steady_clock::now();
    Expect("40,000-state filter", stub->ListJobs(&ctx, req, &resp), grpc::StatusCode::OK, "",
           started);
  }
  {
    v1::ListJobsRequest req;
    req.add_states(static_cast<v1::JobState>(77));
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::ListJobsResponse resp;
    const auto started = std::chrono::steady_clock::now();
    Expect("unknown state", stub->ListJobs(&ctx, req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
           "states", started);
  }
  {
    v1::ListJobsRequest req;
    req.set_page_token(std::string(100000, 'x'));
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::ListJobsResponse resp;
    const auto started = std::chrono::steady_clock::now();
    Expect("forged page token", stub->ListJobs(&ctx, req, &resp),
           grpc::StatusCode::INVALID_ARGUMENT, "page_token", started);
  }
  {
    v1::GetJobRequest req;
    req.set_job_id(std::string(1 << 20, 'j'));
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::Job job;
    const auto started = std::chrono::steady_clock::now();
    Expect("1 MiB job id", stub->GetJob(&ctx, req, &job), grpc::StatusCode::NOT_FOUND, "", started);
  }
  {
    v1::ListJobEventsRequest req;
    req.set_job_id("job-nope");
    req.set_page_size(-1);
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    v1::ListJobEventsResponse resp;
    const auto started = std::chrono::steady_clock::now();
    Expect("negative page size", stub->ListJobEvents(&ctx, req, &resp),
           grpc::StatusCode::INVALID_ARGUMENT, "page_size", started);
  }
  {
    v1::WatchJobRequest req;
    req.set_job_id("job-nope");
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    auto reader = stub->WatchJob(&ctx, req);
    v1::JobEvent e;
    while (reader->Read(&e)) {
    }
    const auto started = std::chrono::steady_clock::now();
    Expect("watch of an unknown job", reader->Finish(), grpc::StatusCode::NOT_FOUND, "", started);
  }
  {
    v1::DownloadAdapterRequest req;
    req.set_job_id("job-nope");
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    auto reader = stub->DownloadAdapter(&ctx, req);
    v1::DownloadAdapterChunk chunk;
    while (reader->Read(&chunk)) {
    }
    const auto started = std::chrono::steady_clock::now();
    Expect("download of an unknown job", reader->Finish(), grpc::StatusCode::NOT_FOUND, "",
           started);
  }
}

TEST_F(HostileInput, BadDatasetsAreRefusedNamingTheLine) {
  struct Bad {
    std::string name, bytes;
    grpc::StatusCode code;
    std::string text;
    bool header = true;
  };
  std::string deep = "{\"text\": ";
  deep += std::string(100000, '[');  // a parser that recurses per level would overflow its stack
  deep += "\n";
  std::string long_line = "{\"text\": \"" + std::string(900 << 10, 'a') + "\"}\n";
  const std::vector<Bad> bad = {
      {"empty file", "", grpc::StatusCode::INVALID_ARGUMENT, "empty"},
      {"not JSON", "hello\n", grpc::StatusCode::INVALID_ARGUMENT, "line 1"},
      {"bad second line", "{\"text\": \"a\"}\n{\"text\": 3}\n", grpc::StatusCode::INVALID_ARGUMENT,
       "line 2"},
      {"invalid UTF-8", "{\"text\": \"\xff\xfe\"}\n", grpc::StatusCode::INVALID_ARGUMENT, "line 1"},
      {"100,000 nested arrays", deep, grpc::StatusCode::INVALID_ARGUMENT, "line 1"},
      {"mixed formats", "{\"text\": \"a\"}\n{\"prompt\": \"b\", \"completion\": \"c\"}\n",
       grpc::StatusCode::INVALID_ARGUMENT, "line 2"},
      {"NUL bytes", std::string("{\"text\": \"a\"}\n\0\0\0\n", 19),
       grpc::StatusCode::INVALID_ARGUMENT, "line 2"},
      {"over --max-dataset-bytes", long_line + long_line, grpc::StatusCode::RESOURCE_EXHAUSTED, ""},
      {"no header", "{\"text\": \"a\"}\n", grpc::StatusCode::INVALID_ARGUMENT, "header", false},
  };
  for (const Bad& b : bad) {
    v1::Dataset ds;
    const auto started = std::chrono::steady_clock::now();
    Expect(b.name, UploadDataset(b.bytes, "bad.jsonl", &ds, b.header), b.code, b.text, started);
  }
}

// lora.r is capped at 4096, but a job within every range can still need more memory than any
// worker has: it is refused at submit with the estimate, and nothing is stored.
TEST_F(HostileInput, AJobThatFitsNoWorkerIsRefusedWithItsMemoryEstimate) {
  FakeWorker small(server_->Channel(), "small", kWorkerToken);
  small.set_memory_bytes(int64_t{8} << 30);
  ASSERT_TRUE(small.Register().ok());
  v1::CreateJobRequest req = BaseRequest();
  req.mutable_spec()->mutable_lora()->set_r(4096);
  req.mutable_spec()->set_batch_size(65536);
  req.mutable_spec()->set_max_seq_len(1 << 20);
  auto started = std::chrono::steady_clock::now();
  Expect("a job that needs more memory than any worker has", Create(req),
         grpc::StatusCode::RESOURCE_EXHAUSTED, "the job needs an estimated", started);
  v1::Job job;
  ASSERT_TRUE(Create(BaseRequest(), &job).ok()) << "a job that fits is still accepted";
  // Out of the way of the suite's other tests (they share the server when run in one process).
  auto stub = v1::JobService::NewStub(server_->Channel());
  grpc::ClientContext ctx;
  Deadline(&ctx, kFastDeadlineMs);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  ASSERT_TRUE(stub->CancelJob(&ctx, cancel, &job).ok());
}

TEST_F(HostileInput, AClientPosingAsAWorkerCanNeitherCrashNorCheat) {
  FakeWorker stranger(server_->Channel(), "stranger");  // no token
  auto started = std::chrono::steady_clock::now();
  Expect("register without the workers' token", stranger.Register(),
         grpc::StatusCode::UNAUTHENTICATED, "", started);

  FakeWorker empty(server_->Channel(), "", kWorkerToken);
  started = std::chrono::steady_clock::now();
  Expect("register without an id", empty.Register(), grpc::StatusCode::INVALID_ARGUMENT,
         "worker_id", started);

  FakeWorker ghost(server_->Channel(), "ghost", kWorkerToken);
  v1::HeartbeatResponse resp;
  started = std::chrono::steady_clock::now();
  Expect("heartbeat before register", ghost.Heartbeat(1, {}, &resp), grpc::StatusCode::NOT_FOUND,
         "Register", started);
  started = std::chrono::steady_clock::now();
  Expect("adapter for a job that does not exist", ghost.Upload(false, "job-nope", 1, 0, "bytes"),
         grpc::StatusCode::NOT_FOUND, "", started);
  std::string bytes;
  started = std::chrono::steady_clock::now();
  Expect("fetch of a path, not a sha256", ghost.Fetch("../../../etc/passwd", &bytes),
         grpc::StatusCode::NOT_FOUND, "", started);

  // A real job, leased by our fake worker.
  v1::Job job;
  ASSERT_TRUE(Create(BaseRequest(), &job).ok());
  FakeWorker w1(server_->Channel(), "w1", kWorkerToken);
  ASSERT_TRUE(w1.Register().ok());
  ASSERT_TRUE(w1.Heartbeat(1000000000, {}, &resp).ok());  // a billion free slots: one job to give
  ASSERT_EQ(resp.leases_size(), 1);
  const v1::Lease lease1 = resp.leases(0);

  started = std::chrono::steady_clock::now();
  Expect("upload whose bytes do not hash to its header",
         w1.Upload(true, job.id(), 1, 1, "checkpoint bytes", std::string(64, 'a')),
         grpc::StatusCode::DATA_LOSS, "sha256", started);
  started = std::chrono::steady_clock::now();
  Expect("upload for an attempt that never was", w1.Upload(true, job.id(), 7, 1, "x"),
         grpc::StatusCode::FAILED_PRECONDITION, "not current", started);
  v1::CompleteJobRequest bogus;
  {
    auto stub = v1::WorkerService::NewStub(server_->Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx, kFastDeadlineMs);
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerToken);
    bogus.set_worker_id("w1");
    bogus.set_job_id(job.id());
    bogus.set_attempt(1);
    bogus.set_final_state(v1::RUNNING);
    v1::CompleteJobResponse r;
    started = std::chrono::steady_clock::now();
    Expect("completion to a state that is not final", stub->CompleteJob(&ctx, bogus, &r),
           grpc::StatusCode::INVALID_ARGUMENT, "final_state", started);
  }

  // Attempt 1 uploads an adapter, then its lease expires (no heartbeats for 3 s). Attempt 2 must
  // not succeed on attempt 1's adapter, and attempt 1 can no longer write anything.
  ASSERT_TRUE(w1.Upload(false, job.id(), 1, 0, "adapter of attempt 1").ok());
  FakeWorker w2(server_->Channel(), "w2", kWorkerToken);
  ASSERT_TRUE(w2.Register().ok());
  v1::Lease lease2;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        v1::HeartbeatResponse r;
        if (!w2.Heartbeat(1, {}, &r).ok() || r.leases_size() == 0) return false;
        lease2 = r.leases(0);
        return true;
      },
      std::chrono::seconds(20)));
  EXPECT_EQ(lease2.attempt(), 2);
  started = std::chrono::steady_clock::now();
  Expect("attempt 2 completing on attempt 1's adapter", w2.Complete(lease2, v1::SUCCEEDED),
         grpc::StatusCode::FAILED_PRECONDITION, "uploaded no adapter", started);
  started = std::chrono::steady_clock::now();
  Expect("stale attempt completing", w1.Complete(lease1, v1::SUCCEEDED),
         grpc::StatusCode::FAILED_PRECONDITION, "not current", started);
  started = std::chrono::steady_clock::now();
  Expect("stale attempt uploading", w1.Upload(false, job.id(), 1, 0, "late"),
         grpc::StatusCode::FAILED_PRECONDITION, "not current", started);
  // Its own adapter, then success; the download serves attempt 2's bytes.
  ASSERT_TRUE(w2.Upload(false, job.id(), 2, 0, "adapter of attempt 2").ok());
  ASSERT_TRUE(w2.Complete(lease2, v1::SUCCEEDED).ok());
  auto stub = v1::JobService::NewStub(server_->Channel());
  grpc::ClientContext ctx;
  Deadline(&ctx, kFastDeadlineMs);
  v1::GetJobRequest get;
  get.set_job_id(job.id());
  v1::Job done;
  ASSERT_TRUE(stub->GetJob(&ctx, get, &done).ok());
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_EQ(done.adapter_sha256(), Sha256Hex("adapter of attempt 2"));
}

}  // namespace
}  // namespace peftd
