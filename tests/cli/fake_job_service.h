// An in-process JobService with canned behaviour on 127.0.0.1 (port 0), and a helper that runs
// peftctl against it: what the CLI tests drive every command through.
#ifndef PEFTD_TESTS_CLI_FAKE_JOB_SERVICE_H_
#define PEFTD_TESTS_CLI_FAKE_JOB_SERVICE_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/cli/peftctl.h"
#include "common/sha256.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "peftd/v1/jobs.grpc.pb.h"

namespace peftd::cli::testing {

// A serialized google.rpc.Status carrying one google.rpc.BadRequest.
inline std::string BadRequestDetails(int code, const std::string& message,
                                     const std::vector<std::pair<std::string, std::string>>& v) {
  google::rpc::BadRequest bad_request;
  for (const auto& [field, description] : v) {
    auto* violation = bad_request.add_field_violations();
    violation->set_field(field);
    violation->set_description(description);
  }
  google::rpc::Status status;
  status.set_code(code);
  status.set_message(message);
  auto* any = status.add_details();
  any->set_type_url("type.googleapis.com/google.rpc.BadRequest");
  any->set_value(bad_request.SerializeAsString());
  return status.SerializeAsString();
}

inline google::protobuf::Timestamp Ts(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

class FakeJobService final : public v1::JobService::Service {
 public:
  FakeJobService() {
    v1::Job job;
    job.set_id("j-1");
    job.set_display_name("first");
    job.set_state(v1::RUNNING);
    job.set_phase(v1::TRAINING);
    job.set_attempt(1);
    job.mutable_spec()->set_base_model("tiny-llama");
    job.mutable_spec()->set_method(v1::LORA);
    job.mutable_progress()->set_step(40);
    job.mutable_progress()->set_total_steps(100);
    job.mutable_progress()->set_train_loss(1.25);
    *job.mutable_create_time() = Ts(1700000000);
    jobs["j-1"] = job;
  }

  // --- knobs -------------------------------------------------------------------------------------
  std::mutex mu;
  std::map<std::string, v1::Job> jobs;  // guarded by mu
  std::vector<v1::JobEvent> events;     // of every job, by id order; guarded by mu
  std::optional<grpc::Status> forced;   // every RPC returns this when set
  std::string required_token;           // "": no auth
  int watch_drop_after = -1;            // first WatchJob call ends UNAVAILABLE after N events
  grpc::StatusCode watch_drop_code = grpc::StatusCode::UNAVAILABLE;  // ...or with this code
  std::string adapter_archive;                                       // DownloadAdapter's bytes
  std::string adapter_archive_file;                                  // ...or this file's, when set
  std::string adapter_name = "my-adapter";
  bool corrupt_sha = false;          // announce a wrong sha256
  int64_t announce_extra_bytes = 0;  // announce a wrong size
  std::vector<v1::Model> models;
  std::vector<v1::Dataset> datasets;

  // --- what the client sent ----------------------------------------------------------------------
  std::vector<v1::CreateJobRequest> creates;
  std::vector<v1::ListJobsRequest> lists;
  std::vector<int64_t> watch_after_ids;
  std::vector<std::string> uploaded_names, uploaded_bytes, uploaded_sha256;
  std::vector<bool> uploaded_allow_bad_lines;
  std::vector<std::string> authorizations;

  grpc::Status CreateJob(grpc::ServerContext* c, const v1::CreateJobRequest* req,
                         v1::Job* job) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    creates.push_back(*req);
    for (const auto& [id, existing] : jobs) {
      if (!req->request_id().empty() && existing.request_id() == req->request_id()) {
        c->AddInitialMetadata("peftd-existing-job", "true");  // as peftd marks a repeat
        *job = existing;
        return grpc::Status::OK;
      }
    }
    job->set_id(absl::StrCat("j-", jobs.size() + 1));
    job->set_request_id(req->request_id());
    job->set_display_name(req->display_name());
    *job->mutable_labels() = req->labels();
    *job->mutable_spec() = req->spec();
    job->set_state(v1::QUEUED);
    job->set_attempt(1);
    *job->mutable_create_time() = Ts(1700000000);
    if (req->spec().base_model() == "missing-model") {
      job->set_state(v1::FAILED);
      job->mutable_error()->set_code(3);
      job->mutable_error()->set_message("base_model: no model 'missing-model' under the root");
      job->mutable_error()->set_field("base_model");
      job->mutable_error()->set_blame(v1::JobError::USER);
    }
    jobs[job->id()] = *job;
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* c, const v1::GetJobRequest* req, v1::Job* job) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    auto it = jobs.find(req->job_id());
    if (it == jobs.end()) return {grpc::StatusCode::NOT_FOUND, "no job " + req->job_id()};
    *job = it->second;
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* c, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    lists.push_back(*req);
    std::vector<const v1::Job*> matching;
    for (const auto& [id, job] : jobs) {
      bool state_ok = req->states().empty();
      for (int s : req->states()) state_ok = state_ok || s == job.state();
      bool labels_ok = true;
      for (const auto& [k, v] : req->labels()) {
        auto it = job.labels().find(k);
        labels_ok = labels_ok && it != job.labels().end() && it->second == v;
      }
      if (state_ok && labels_ok) matching.push_back(&job);
    }
    size_t start = req->page_token().empty() ? 0 : std::stoul(req->page_token());
    size_t size = req->page_size() > 0 ? req->page_size() : 50;
    for (size_t i = start; i < matching.size() && i < start + size; ++i) {
      *resp->add_jobs() = *matching[i];
    }
    if (start + size < matching.size()) resp->set_next_page_token(std::to_string(start + size));
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* c, const v1::CancelJobRequest* req,
                         v1::Job* job) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    auto it = jobs.find(req->job_id());
    if (it == jobs.end()) return {grpc::StatusCode::NOT_FOUND, "no job " + req->job_id()};
    if (it->second.state() == v1::QUEUED) it->second.set_state(v1::CANCELLED);
    if (it->second.state() == v1::RUNNING) it->second.set_state(v1::CANCELLING);
    *job = it->second;
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* c, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::vector<v1::JobEvent> to_send;
    int drop_after = -1;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (jobs.find(req->job_id()) == jobs.end()) {
        return {grpc::StatusCode::NOT_FOUND, "no job " + req->job_id()};
      }
      watch_after_ids.push_back(req->after_event_id());
      for (const auto& e : events) {
        if (e.job_id() == req->job_id() && e.id() > req->after_event_id()) to_send.push_back(e);
      }
      drop_after = watch_drop_after;
      watch_drop_after = -1;  // only the first stream drops
    }
    int sent = 0;
    for (const auto& e : to_send) {
      if (drop_after >= 0 && sent == drop_after) {
        return {watch_drop_code, "connection dropped"};
      }
      writer->Write(e);
      ++sent;
    }
    return grpc::Status::OK;
  }

  grpc::Status ListJobEvents(grpc::ServerContext* c, const v1::ListJobEventsRequest* req,
                             v1::ListJobEventsResponse* resp) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    if (jobs.find(req->job_id()) == jobs.end()) {
      return {grpc::StatusCode::NOT_FOUND, "no job " + req->job_id()};
    }
    int size = req->page_size() > 0 ? req->page_size() : 100;
    for (const auto& e : events) {
      if (e.job_id() == req->job_id() && e.id() > req->after_event_id() &&
          resp->events_size() < size) {
        *resp->add_events() = e;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status UploadDataset(grpc::ServerContext* c,
                             grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                             v1::Dataset* dataset) override {
    if (auto s = Gate(c); !s.ok()) return s;
    v1::UploadDatasetRequest msg;
    v1::UploadDatasetRequest::Header header;
    std::string bytes;
    while (reader->Read(&msg)) {
      if (msg.has_header()) header = msg.header();
      bytes += msg.chunk();
    }
    std::lock_guard<std::mutex> lock(mu);
    uploaded_names.push_back(header.filename());
    uploaded_bytes.push_back(bytes);
    uploaded_sha256.push_back(header.sha256());
    uploaded_allow_bad_lines.push_back(header.allow_bad_lines());
    if (header.sha256() != Sha256Hex(bytes) || header.size_bytes() != (int64_t)bytes.size()) {
      return {grpc::StatusCode::DATA_LOSS, "size or sha256 mismatch"};
    }
    std::vector<std::pair<std::string, std::string>> bad;
    int line_no = 0;
    for (absl::string_view line : absl::StrSplit(bytes, '\n', absl::SkipEmpty())) {
      ++line_no;
      if (absl::StrContains(line, "BAD")) {
        bad.push_back(
            {absl::StrCat("line ", line_no, ": text"),
             absl::StrCat("line ", line_no, ": field \"text\": must be a non-empty string")});
      }
    }
    // As peftd: with allow_bad_lines a file with some good lines is kept, its bad ones counted.
    if (!bad.empty() && header.allow_bad_lines() && static_cast<int>(bad.size()) < line_no) {
      dataset->set_bad_lines(static_cast<int64_t>(bad.size()));
      bad.clear();
    }
    if (!bad.empty()) {
      // As peftd words it: every bad line in the message, and each as a field violation.
      std::string message = absl::StrCat(header.filename(), ": ", bad.size(), " bad lines: ");
      for (const auto& [field, description] : bad) absl::StrAppend(&message, description, "; ");
      absl::StrAppend(&message, "fix the file and upload it again");
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message,
                          BadRequestDetails(3, message, bad));
    }
    dataset->set_id("ds-" + Sha256Hex(bytes).substr(0, 16));
    dataset->set_sha256(Sha256Hex(bytes));
    dataset->set_size_bytes(static_cast<int64_t>(bytes.size()));
    dataset->set_lines(line_no);
    dataset->set_filename(header.filename());
    dataset->set_format("text");
    return grpc::Status::OK;
  }

  grpc::Status ListDatasets(grpc::ServerContext* c, const v1::ListDatasetsRequest*,
                            v1::ListDatasetsResponse* resp) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& d : datasets) *resp->add_datasets() = d;
    return grpc::Status::OK;
  }

  grpc::Status ListModels(grpc::ServerContext* c, const v1::ListModelsRequest*,
                          v1::ListModelsResponse* resp) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& m : models) *resp->add_models() = m;
    return grpc::Status::OK;
  }

  grpc::Status DownloadAdapter(grpc::ServerContext* c, const v1::DownloadAdapterRequest* req,
                               grpc::ServerWriter<v1::DownloadAdapterChunk>* writer) override {
    if (auto s = Gate(c); !s.ok()) return s;
    std::string archive, name, file;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (jobs.find(req->job_id()) == jobs.end()) {
        return {grpc::StatusCode::NOT_FOUND, "no job " + req->job_id()};
      }
      file = adapter_archive_file;
      if (file.empty()) archive = adapter_archive;
      name = adapter_name;
    }
    v1::DownloadAdapterChunk header;
    if (!file.empty()) {  // from disk, 1 MiB at a time, as peftd serves a blob
      header.mutable_header()->set_name(name);
      header.mutable_header()->set_size_bytes(
          static_cast<int64_t>(std::filesystem::file_size(file)));
      header.mutable_header()->set_sha256(*Sha256HexOfFile(file));
      writer->Write(header);
      std::ifstream in(file, std::ios::binary);
      std::string buf(1 << 20, '\0');
      while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
        v1::DownloadAdapterChunk chunk;
        chunk.set_chunk(buf.substr(0, static_cast<size_t>(in.gcount())));
        writer->Write(chunk);
      }
      return grpc::Status::OK;
    }
    header.mutable_header()->set_name(name);
    header.mutable_header()->set_size_bytes(static_cast<int64_t>(archive.size()) +
                                            announce_extra_bytes);
    header.mutable_header()->set_sha256(corrupt_sha ? Sha256Hex("something else")
                                                    : Sha256Hex(archive));
    writer->Write(header);
    for (size_t at = 0; at < archive.size(); at += 1000) {
      v1::DownloadAdapterChunk chunk;
      chunk.set_chunk(archive.substr(at, 1000));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

 private:
  grpc::Status Gate(grpc::ServerContext* c) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = c->client_metadata().find("authorization");
    std::string auth =
        it == c->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
    authorizations.push_back(auth);
    if (!required_token.empty() && auth != "Bearer " + required_token) {
      return {grpc::StatusCode::UNAUTHENTICATED, "missing or wrong bearer token"};
    }
    if (forced) return *forced;
    return grpc::Status::OK;
  }
};

// The fake on 127.0.0.1 with a port the kernel picks.
class FakeServer {
 public:
  explicit FakeServer(
      std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials()) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterService(&service);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { server_->Shutdown(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void SetServing(bool serving) { server_->GetHealthCheckService()->SetServingStatus(serving); }

  FakeJobService service;

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs `peftctl ARGS...` in-process.
inline RunResult RunCli(std::vector<std::string> args) {
  args.insert(args.begin(), "peftctl");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  RunResult r;
  r.code = RunPeftctl(static_cast<int>(argv.size()), argv.data(), out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// A fresh empty folder under the system temp dir.
inline std::filesystem::path TempDir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() /
           ("peftctl_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace peftd::cli::testing

#endif  // PEFTD_TESTS_CLI_FAKE_JOB_SERVICE_H_
