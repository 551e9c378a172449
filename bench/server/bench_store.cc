// The job store under load, through the real gRPC services on loopback (in-process PeftdServer):
// with N jobs in the store (default 10,000), CreateJob and GetJob latency (p50/p99) and ListJobs
// throughput (pages/s and jobs listed/s), unfiltered and with a state + label filter. One JSON
// document on stdout.
//
//   bench_store [--jobs N] [--gets N] [--list-seconds S] [--page-size N]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "peftd/v1/jobs.grpc.pb.h"
#include "server/peftd_server.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

std::string LatencyJson(const std::vector<double>& ms) {
  return absl::StrFormat("{\"calls\": %d, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}",
                         ms.size(), Percentile(ms, 0.5), Percentile(ms, 0.99), Percentile(ms, 1.0));
}

struct ListResult {
  double pages_per_s = 0, jobs_per_s = 0;
  int64_t pages = 0, jobs = 0;
};

ListResult ListFor(peftd::v1::JobService::Stub& stub, peftd::v1::ListJobsRequest base,
                   double seconds) {
  ListResult r;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    peftd::v1::ListJobsRequest req = base;
    do {
      grpc::ClientContext ctx;
      peftd::v1::ListJobsResponse resp;
      grpc::Status st = stub.ListJobs(&ctx, req, &resp);
      if (!st.ok()) {
        std::fprintf(stderr, "ListJobs: %s\n", st.error_message().c_str());
        std::exit(1);
      }
      ++r.pages;
      r.jobs += resp.jobs_size();
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty() && Clock::now() < until);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  r.pages_per_s = r.pages / elapsed;
  r.jobs_per_s = r.jobs / elapsed;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int jobs = 10000, gets = 2000, page_size = 100;
  double list_seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--jobs")
      jobs = std::atoi(argv[i + 1]);
    else if (k == "--gets")
      gets = std::atoi(argv[i + 1]);
    else if (k == "--page-size")
      page_size = std::atoi(argv[i + 1]);
    else if (k == "--list-seconds")
      list_seconds = std::atof(argv[i + 1]);
  }
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("peftd_bench_store_", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "models" / "tiny");
  std::ofstream(dir / "models" / "tiny" / "config.json") << "{}";
  peftd::server::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  o.data_dir = (dir / "data").string();
  o.model_root = (dir / "models").string();
  o.local_workers = 0;
  auto server = peftd::server::PeftdServer::Start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel((*server)->grpc_address(), grpc::InsecureChannelCredentials());
  auto stub = peftd::v1::JobService::NewStub(channel);

  // One dataset for every job.
  const std::string data = "{\"text\": \"hello world\"}\n";
  peftd::v1::Dataset ds;
  {
    grpc::ClientContext ctx;
    auto w = stub->UploadDataset(&ctx, &ds);
    peftd::v1::UploadDatasetRequest h, c;
    h.mutable_header()->set_filename("bench.jsonl");
    c.set_chunk(data);
    w->Write(h);
    w->Write(c);
    w->WritesDone();
    if (!w->Finish().ok()) return 1;
  }

  std::vector<double> create_ms;
  std::vector<std::string> ids;
  create_ms.reserve(jobs);
  for (int i = 0; i < jobs; ++i) {
    peftd::v1::CreateJobRequest req;
    req.set_request_id(absl::StrCat("bench-", i));
    (*req.mutable_labels())["team"] = i % 10 == 0 ? "rare" : "common";
    auto* s = req.mutable_spec();
    s->set_base_model("tiny");
    s->set_method(peftd::v1::LORA);
    s->set_training_dataset_id(ds.id());
    s->set_max_steps(100);
    grpc::ClientContext ctx;
    peftd::v1::Job job;
    const auto t0 = Clock::now();
    grpc::Status st = stub->CreateJob(&ctx, req, &job);
    create_ms.push_back(Ms(Clock::now() - t0));
    if (!st.ok()) {
      std::fprintf(stderr, "CreateJob: %s\n", st.error_message().c_str());
      return 1;
    }
    ids.push_back(job.id());
    // Cancel 1 in 4 so the state filter has something to select.
    if (i % 4 == 0) {
      grpc::ClientContext c2;
      peftd::v1::CancelJobRequest cr;
      cr.set_job_id(job.id());
      stub->CancelJob(&c2, cr, &job);
    }
  }

  std::mt19937 rng(42);
  std::vector<double> get_ms;
  for (int i = 0; i < gets; ++i) {
    peftd::v1::GetJobRequest req;
    req.set_job_id(ids[rng() % ids.size()]);
    grpc::ClientContext ctx;
    peftd::v1::Job job;
    const auto t0 = Clock::now();
    grpc::Status st = stub->GetJob(&ctx, req, &job);
    get_ms.push_back(Ms(Clock::now() - t0));
    if (!st.ok()) return 1;
  }

  peftd::v1::ListJobsRequest all;
  all.set_page_size(page_size);
  const ListResult plain = ListFor(*stub, all, list_seconds);
  peftd::v1::ListJobsRequest filtered = all;
  filtered.add_states(peftd::v1::CANCELLED);
  (*filtered.mutable_labels())["team"] = "rare";
  const ListResult narrow = ListFor(*stub, filtered, list_seconds);

  std::printf(
      "{\"bench\": \"store\", \"jobs_in_store\": %d, \"transport\": \"gRPC loopback, in-process "
      "server\",\n \"create_job\": %s,\n \"get_job\": %s,\n"
      " \"list_jobs\": {\"page_size\": %d, \"pages_per_s\": %.1f, \"jobs_listed_per_s\": %.0f},\n"
      " \"list_jobs_state_and_label_filter\": {\"page_size\": %d, \"pages_per_s\": %.1f, "
      "\"jobs_listed_per_s\": %.0f}}\n",
      jobs, LatencyJson(create_ms).c_str(), LatencyJson(get_ms).c_str(), page_size,
      plain.pages_per_s, plain.jobs_per_s, page_size, narrow.pages_per_s, narrow.jobs_per_s);
  (*server)->Stop();
  fs::remove_all(dir);
  return 0;
}
