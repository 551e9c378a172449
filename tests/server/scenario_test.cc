// Runs the job-lifecycle scenarios of tests/server/scenarios/*.scenario against a real Scheduler,
// JobStore and BlobStore on a FakeClock (STYLE.md: data-driven tests, as DuckDB's *.test files).
//
// One command a line; `#` starts a comment. Jobs and workers are named by aliases (j1, w1).
//   options lease_timeout=6s heartbeat_interval=2s restart_grace=30s   (before the first submit)
//   dataset d1 [format=classification]        upload a dataset (d0, a text dataset, always exists)
//   submit j1 [max_attempts=N] [request_id=R] [model=M] [method=LORA] [dataset=d1] [lr=X]
//             [task=SEQ_CLS] [max_steps=N] [label=k:v] [keep=N]
//             -> ok | same j0 | error CODE ["text"]
//   register w1 [running=j1,j2]
//   heartbeat w1 [free=N] -> nothing | lease j1 attempt=N [resume=STEP|none]; cancel j1; drop j2
//   report w1 j1 attempt=N [step=S]          a heartbeat with one report, no free slot
//                                            -> ok | refused | cancel
//   checkpoint j1 attempt=N step=S           -> ok | error CODE ["text"]
//   adapter j1 attempt=N                     -> ok | error CODE ["text"]
//   complete w1 j1 attempt=N SUCCEEDED|FAILED|CANCELLED  -> ok | error CODE ["text"]
//   worker-exit w1 "how"                     its supervisor saw worker w1's process end
//   cancel j1                                -> STATE
//   advance 7s | tick | restart              (restart: drop the scheduler, reopen the store)
//   expect j1 STATE [attempt=N] [worker=w1|none] [checkpoints=N] [step=N] [error="text"]
//             [charged=N] [crashes=N] [adapter=set|none] [resume_steps=S1,S2]
//   expect-event j1 "text"                   some event of j1 contains text
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "server/scheduler.h"
#include "storage/blob_store.h"
#include "storage/job_store.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

// Splits on blanks, keeping "quoted text" (quotes removed) as one token.
std::vector<std::string> Tokenize(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false, any = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
      any = true;
    } else if (!quoted && (c == ' ' || c == '\t')) {
      if (any) out.push_back(cur);
      cur.clear();
      any = false;
    } else {
      cur += c;
      any = true;
    }
  }
  if (any) out.push_back(cur);
  return out;
}

struct Command {
  std::vector<std::string> args;            // positional words
  std::map<std::string, std::string> keys;  // key=value words
  std::vector<std::string> expect;          // words after "->"
};

Command Parse(const std::string& line) {
  Command c;
  bool after_arrow = false;
  for (const std::string& t : Tokenize(line)) {
    if (t == "->") {
      after_arrow = true;
    } else if (after_arrow) {
      c.expect.push_back(t);
    } else if (size_t eq = t.find('='); eq != std::string::npos && eq > 0) {
      c.keys[t.substr(0, eq)] = t.substr(eq + 1);
    } else {
      c.args.push_back(t);
    }
  }
  return c;
}

absl::Duration ParseDuration(const std::string& s) {
  absl::Duration d;
  EXPECT_TRUE(absl::ParseDuration(s, &d)) << "bad duration " << s;
  return d;
}

int ToInt(const std::string& s) {
  int v = 0;
  EXPECT_TRUE(absl::SimpleAtoi(s, &v)) << "bad number " << s;
  return v;
}

class ScenarioRunner {
 public:
  explicit ScenarioRunner(const std::string& name) {
    dir_ = fs::temp_directory_path() / absl::StrCat("peftd_scenario_", name, "_", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
    options_.model_root = (dir_ / "models").string();
    options_.new_job_id = [this] { return absl::StrCat("job-", ++job_counter_); };
  }
  ~ScenarioRunner() {
    scheduler_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // Runs one line; returns a failure description, empty when it passed.
  std::string Run(const std::string& line) {
    Command c = Parse(line);
    if (c.args.empty()) return "";
    const std::string& verb = c.args[0];
    if (verb == "options") {
      if (c.keys.count("lease_timeout"))
        options_.lease_timeout = ParseDuration(c.keys["lease_timeout"]);
      if (c.keys.count("heartbeat_interval"))
        options_.heartbeat_interval = ParseDuration(c.keys["heartbeat_interval"]);
      if (c.keys.count("restart_grace"))
        options_.restart_grace = ParseDuration(c.keys["restart_grace"]);
      return Start();
    }
    if (scheduler_ == nullptr) {
      if (std::string err = Start(); !err.empty()) return err;
    }
    if (verb == "dataset") return AddDataset(c.args.at(1), c.keys["format"]);
    if (verb == "submit") return Submit(c);
    if (verb == "register") return Register(c);
    if (verb == "heartbeat") return Heartbeat(c);
    if (verb == "report") return Report(c);
    if (verb == "checkpoint") {
      return CheckStatus(scheduler_->RecordCheckpoint(Job(c.args.at(1)), ToInt(c.keys["attempt"]),
                                                      ToInt(c.keys["step"]), Sha256Hex(line), 100),
                         c.expect);
    }
    if (verb == "adapter") {
      return CheckStatus(scheduler_->RecordAdapter(Job(c.args.at(1)), ToInt(c.keys["attempt"]),
                                                   false, Sha256Hex(line), 200),
                         c.expect);
    }
    if (verb == "complete") {
      v1::CompleteJobRequest req;
      req.set_worker_id(c.args.at(1));
      req.set_job_id(Job(c.args.at(2)));
      req.set_attempt(ToInt(c.keys["attempt"]));
      v1::JobState state;
      if (!v1::JobState_Parse(c.args.at(3), &state)) return "bad state " + c.args.at(3);
      req.set_final_state(state);
      if (state == v1::FAILED) req.mutable_error()->set_message("worker said no");
      return CheckStatus(scheduler_->CompleteJob(req), c.expect);
    }
    if (verb == "worker-exit") {
      return CheckStatus(scheduler_->WorkerExited(c.args.at(1), c.args.at(2)), c.expect);
    }
    if (verb == "cancel") {
      auto job = scheduler_->CancelJob(Job(c.args.at(1)));
      if (!job.ok()) return CheckStatus(job.status(), c.expect);
      if (!c.expect.empty() && v1::JobState_Name(job->state()) != c.expect[0]) {
        return absl::StrCat("cancel returned ", v1::JobState_Name(job->state()));
      }
      return "";
    }
    if (verb == "advance") {
      clock_.Advance(ParseDuration(c.args.at(1)));
      return "";
    }
    if (verb == "tick") {
      scheduler_->Tick();
      return "";
    }
    if (verb == "restart") {
      scheduler_.reset();
      store_.reset();
      return Start();
    }
    if (verb == "expect") return Expect(c);
    if (verb == "expect-event") return ExpectEvent(c);
    return "unknown command " + verb;
  }

 private:
  std::string Start() {
    auto store = storage::JobStore::Open((dir_ / "jobs.db").string());
    if (!store.ok()) return store.status().ToString();
    store_ = std::move(*store);
    auto blobs = storage::BlobStore::Open((dir_ / "blobs").string());
    if (!blobs.ok()) return blobs.status().ToString();
    blobs_ = std::make_unique<storage::BlobStore>(std::move(*blobs));
    auto s = Scheduler::Create(store_.get(), blobs_.get(), &clock_, options_);
    if (!s.ok()) return s.status().ToString();
    scheduler_ = std::move(*s);
    if (!datasets_.count("d0")) return AddDataset("d0", "text");
    return "";
  }

  std::string AddDataset(const std::string& alias, const std::string& format) {
    const std::string bytes = absl::StrCat("{\"text\": \"", alias, "\"}\n");
    auto sha = blobs_->Put(bytes);
    if (!sha.ok()) return sha.status().ToString();
    v1::Dataset ds;
    ds.set_id("ds-" + sha->substr(0, 16));
    ds.set_sha256(*sha);
    ds.set_size_bytes(static_cast<int64_t>(bytes.size()));
    ds.set_lines(1);
    ds.set_format(format.empty() ? "text" : format);
    auto st = scheduler_->RecordDataset(ds);
    if (!st.ok()) return st.status().ToString();
    datasets_[alias] = ds.id();
    return "";
  }

  std::string Job(const std::string& alias) {
    auto it = jobs_.find(alias);
    return it == jobs_.end() ? alias : it->second;
  }

  // "ok" (or nothing) expects OK; "error CODE [text]" expects that code and text in the message.
  static std::string CheckStatus(const absl::Status& st, const std::vector<std::string>& expect) {
    if (expect.empty() || expect[0] == "ok") {
      return st.ok() ? "" : "expected ok, got " + st.ToString();
    }
    if (expect[0] != "error" || expect.size() < 2) return "bad expectation";
    if (st.ok()) return "expected " + expect[1] + ", got OK";
    if (absl::StatusCodeToString(st.code()) != expect[1]) {
      return "expected " + expect[1] + ", got " + st.ToString();
    }
    if (expect.size() > 2 && !absl::StrContains(st.message(), expect[2])) {
      return absl::StrCat("message '", st.message(), "' lacks '", expect[2], "'");
    }
    return "";
  }

  std::string Submit(Command& c) {
    const std::string alias = c.args.at(1);
    v1::CreateJobRequest req;
    v1::JobSpec* spec = req.mutable_spec();
    spec->set_base_model(c.keys.count("model") ? c.keys["model"] : "tiny");
    v1::Method method = v1::LORA;
    if (c.keys.count("method") && !v1::Method_Parse(c.keys["method"], &method)) {
      return "bad method";
    }
    spec->set_method(method);
    const std::string ds = c.keys.count("dataset") ? c.keys["dataset"] : "d0";
    spec->set_training_dataset_id(datasets_.count(ds) ? datasets_[ds] : ds);
    spec->set_max_steps(c.keys.count("max_steps") ? ToInt(c.keys["max_steps"]) : 10);
    if (c.keys.count("max_attempts")) spec->set_max_attempts(ToInt(c.keys["max_attempts"]));
    if (c.keys.count("keep")) spec->set_keep_checkpoints(ToInt(c.keys["keep"]));
    if (c.keys.count("lr")) spec->set_learning_rate(std::stod(c.keys["lr"]));
    if (c.keys.count("task")) {
      v1::TaskType task;
      if (!v1::TaskType_Parse(c.keys["task"], &task)) return "bad task";
      spec->set_task(task);
      spec->set_num_labels(2);
    }
    if (c.keys.count("label")) {
      std::pair<std::string, std::string> kv = absl::StrSplit(c.keys["label"], ':');
      (*req.mutable_labels())[kv.first] = kv.second;
    }
    req.set_request_id(c.keys["request_id"]);
    auto job = scheduler_->CreateJob(req);
    if (!c.expect.empty() && c.expect[0] == "same") {
      if (!job.ok()) return job.status().ToString();
      if (job->id() != Job(c.expect.at(1))) {
        return absl::StrCat("expected the job of ", c.expect[1], ", got ", job->id());
      }
      jobs_[alias] = job->id();
      return "";
    }
    if (job.ok()) jobs_[alias] = job->id();
    return CheckStatus(job.status(), c.expect);
  }

  std::string Register(Command& c) {
    v1::RegisterRequest req;
    req.set_worker_id(c.args.at(1));
    req.add_devices()->set_name("cpu");
    if (c.keys.count("running")) {
      for (absl::string_view j : absl::StrSplit(c.keys["running"], ',')) {
        req.add_running_job_ids(Job(std::string(j)));
      }
    }
    auto resp = scheduler_->Register(req);
    return CheckStatus(resp.status(), c.expect);
  }

  std::string DescribeResponse(const v1::HeartbeatResponse& r) {
    std::vector<std::string> parts;
    for (const auto& l : r.leases()) {
      parts.push_back(absl::StrCat(
          "lease ", Alias(l.job_id()), " attempt=", l.attempt(), " resume=",
          l.has_resume_from() ? absl::StrCat(l.resume_from().step()) : std::string("none")));
    }
    for (const auto& id : r.cancel_job_ids()) parts.push_back("cancel " + Alias(id));
    for (const auto& id : r.drop_job_ids()) parts.push_back("drop " + Alias(id));
    return parts.empty() ? "nothing" : absl::StrJoin(parts, "; ");
  }

  std::string Alias(const std::string& id) {
    for (const auto& [alias, job_id] : jobs_) {
      if (job_id == id) return alias;
    }
    return id;
  }

  // Compares a heartbeat reply with the expectation; a lease without resume= matches any resume.
  std::string Heartbeat(Command& c) {
    v1::HeartbeatRequest req;
    req.set_worker_id(c.args.at(1));
    req.set_free_slots(c.keys.count("free") ? ToInt(c.keys["free"]) : 0);
    auto resp = scheduler_->Heartbeat(req);
    if (!resp.ok()) return CheckStatus(resp.status(), c.expect);
    std::string want = absl::StrJoin(c.expect, " ");
    std::string got = DescribeResponse(*resp);
    if (want.empty()) return "";
    if (got == want) return "";
    // Allow the expectation to leave resume= out.
    std::string got_loose;
    for (absl::string_view part : absl::StrSplit(got, "; ")) {
      std::string p(part);
      if (!absl::StrContains(want, "resume=") && absl::StartsWith(p, "lease")) {
        p = p.substr(0, p.find(" resume="));
      }
      got_loose += (got_loose.empty() ? "" : "; ") + p;
    }
    return got_loose == want ? "" : "heartbeat got: " + got;
  }

  std::string Report(Command& c) {
    v1::HeartbeatRequest req;
    req.set_worker_id(c.args.at(1));
    v1::ProgressReport* r = req.add_reports();
    r->set_job_id(Job(c.args.at(2)));
    r->set_attempt(ToInt(c.keys["attempt"]));
    r->set_phase(v1::TRAINING);
    if (c.keys.count("step")) {
      r->mutable_progress()->set_step(ToInt(c.keys["step"]));
      r->mutable_progress()->set_total_steps(10);
    }
    auto resp = scheduler_->Heartbeat(req);
    if (!resp.ok()) return CheckStatus(resp.status(), c.expect);
    const std::string want = c.expect.empty() ? "ok" : c.expect[0];
    const bool dropped = resp->drop_job_ids_size() > 0;
    const bool cancelled = resp->cancel_job_ids_size() > 0;
    if (want == "refused" && dropped) return "";
    if (want == "cancel" && cancelled && !dropped) return "";
    if (want == "ok" && !dropped && !cancelled) return "";
    return "report got: " + DescribeResponse(*resp);
  }

  std::string Expect(Command& c) {
    auto job = scheduler_->GetJob(Job(c.args.at(1)));
    if (!job.ok()) return job.status().ToString();
    std::vector<std::string> diffs;
    if (c.args.size() > 2 && v1::JobState_Name(job->state()) != c.args[2]) {
      diffs.push_back("state " + v1::JobState_Name(job->state()));
    }
    if (c.keys.count("attempt") && job->attempt() != ToInt(c.keys["attempt"])) {
      diffs.push_back(absl::StrCat("attempt ", job->attempt()));
    }
    if (c.keys.count("worker")) {
      const std::string want = c.keys["worker"] == "none" ? "" : c.keys["worker"];
      if (job->worker_id() != want) diffs.push_back("worker '" + job->worker_id() + "'");
    }
    if (c.keys.count("checkpoints") && job->checkpoints_size() != ToInt(c.keys["checkpoints"])) {
      diffs.push_back(absl::StrCat("checkpoints ", job->checkpoints_size()));
    }
    if (c.keys.count("step") && job->progress().step() != ToInt(c.keys["step"])) {
      diffs.push_back(absl::StrCat("step ", job->progress().step()));
    }
    if (c.keys.count("error") && !absl::StrContains(job->error().message(), c.keys["error"])) {
      diffs.push_back("error '" + job->error().message() + "'");
    }
    if (c.keys.count("charged") && job->attempts_charged() != ToInt(c.keys["charged"])) {
      diffs.push_back(absl::StrCat("charged ", job->attempts_charged()));
    }
    if (c.keys.count("crashes") && job->crashes_without_progress() != ToInt(c.keys["crashes"])) {
      diffs.push_back(absl::StrCat("crashes ", job->crashes_without_progress()));
    }
    if (c.keys.count("adapter")) {
      const std::string got = job->adapter_sha256().empty() ? "none" : "set";
      if (got != c.keys["adapter"]) diffs.push_back("adapter " + got);
    }
    if (c.keys.count("resume_steps")) {
      // The checkpoint records the store keeps, oldest first, as the job lists them.
      std::vector<std::string> steps;
      auto stored = scheduler_->ListCheckpoints(job->id());
      if (!stored.ok()) return stored.status().ToString();
      for (const auto& cp : *stored) steps.push_back(absl::StrCat(cp.step()));
      std::vector<std::string> in_job;
      for (const auto& cp : job->checkpoints()) in_job.push_back(absl::StrCat(cp.step()));
      if (absl::StrJoin(steps, ",") != c.keys["resume_steps"] ||
          absl::StrJoin(in_job, ",") != c.keys["resume_steps"]) {
        diffs.push_back(absl::StrCat("checkpoint steps stored [", absl::StrJoin(steps, ","),
                                     "], in the job [", absl::StrJoin(in_job, ","), "]"));
      }
    }
    return diffs.empty() ? "" : "got " + absl::StrJoin(diffs, ", ");
  }

  std::string ExpectEvent(Command& c) {
    auto events = scheduler_->ListJobEvents(Job(c.args.at(1)), 0, 1000);
    if (!events.ok()) return events.status().ToString();
    int64_t last_id = 0;
    for (const auto& e : *events) {
      if (e.id() <= last_id) return "event ids are not increasing";
      last_id = e.id();
    }
    for (const auto& e : *events) {
      if (absl::StrContains(e.message(), c.args.at(2))) return "";
    }
    std::string all;
    for (const auto& e : *events) absl::StrAppend(&all, "\n    ", e.id(), " ", e.message());
    return "no event contains '" + c.args[2] + "'; events:" + all;
  }

  fs::path dir_;
  FakeClock clock_;
  SchedulerOptions options_;
  int job_counter_ = 0;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, std::string> jobs_;      // alias -> job id
  std::map<std::string, std::string> datasets_;  // alias -> dataset id
};

std::vector<std::string> ScenarioFiles() {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(PEFTD_SOURCE_DIR "/tests/server/scenarios")) {
    if (e.path().extension() == ".scenario") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class Scenario : public ::testing::TestWithParam<std::string> {};

TEST_P(Scenario, Runs) {
  const std::string path = GetParam();
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  ScenarioRunner runner(fs::path(path).stem().string());
  std::string line;
  int line_no = 0;
  int commands = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const size_t hash = line.find('#');
    const std::string code = hash == std::string::npos ? line : line.substr(0, hash);
    if (code.find_first_not_of(" \t") == std::string::npos) continue;
    ++commands;
    const std::string failure = runner.Run(code);
    if (!failure.empty()) {
      ADD_FAILURE() << fs::path(path).filename().string() << ":" << line_no << ": " << code
                    << "\n  " << failure;
    }
  }
  EXPECT_GT(commands, 0) << path << " has no commands";
}

INSTANTIATE_TEST_SUITE_P(Scenarios, Scenario, ::testing::ValuesIn(ScenarioFiles()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = fs::path(info.param).stem().string();
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace peftd::server
