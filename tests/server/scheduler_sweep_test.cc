// Sweeps in the scheduler: children are admitted like jobs and stored with the sweep in one go,
// queue like other jobs, respect the sweep's concurrency limit (also after a restart), and are
// cancelled with it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/scheduler.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

namespace fs = std::filesystem;

class SchedulerSweepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("peftd_sweep_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name(), getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models" / "tiny");
    std::ofstream(dir_ / "models" / "tiny" / "config.json") << testing::kTestModelConfigJson;
    store_ = std::move(*storage::JobStore::Open((dir_ / "jobs.db").string()));
    blobs_ = std::make_unique<storage::BlobStore>(
        std::move(*storage::BlobStore::Open((dir_ / "blobs").string())));
    Start();
    v1::Dataset ds;
    ds.set_id("ds-1");
    ds.set_sha256(*blobs_->Put("{\"text\": \"x\"}\n"));
    ds.set_format("text");
    ASSERT_TRUE(scheduler_->RecordDataset(ds).ok());
  }
  void Start() {
    scheduler_.reset();
    SchedulerOptions o;
    o.model_root = (dir_ / "models").string();
    o.max_sweep_children = 6;
    o.new_job_id = [this] { return absl::StrCat("job-", next_id_++); };
    o.new_sweep_id = [this] { return absl::StrCat("sweep-", next_id_++); };
    scheduler_ = std::move(*Scheduler::Create(store_.get(), blobs_.get(), &clock_, o));
  }
  void TearDown() override {
    scheduler_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  static v1::CreateSweepRequest Request(const std::string& field, std::vector<std::string> values,
                                        int max_concurrency = 0) {
    v1::CreateSweepRequest r;
    v1::JobSpec* base = r.mutable_spec()->mutable_base();
    base->set_base_model("tiny");
    base->set_method(v1::LORA);
    base->set_training_dataset_id("ds-1");
    base->mutable_token_gate()->set_enabled(true);
    v1::SweepAxis* axis = r.mutable_spec()->add_axes();
    axis->set_field(field);
    for (auto& v : values) axis->add_values(v);
    r.mutable_spec()->set_max_concurrency(max_concurrency);
    return r;
  }
  std::vector<std::string> Lease(int slots, const std::string& worker = "w1") {
    v1::RegisterRequest reg;
    reg.set_worker_id(worker);
    if (registered_.insert(worker).second) EXPECT_TRUE(scheduler_->Register(reg).ok());
    v1::HeartbeatRequest hb;
    hb.set_worker_id(worker);
    hb.set_free_slots(slots);
    auto resp = scheduler_->Heartbeat(hb);
    EXPECT_TRUE(resp.ok()) << resp.status();
    std::vector<std::string> ids;
    for (const auto& l : resp->leases()) ids.push_back(l.job_id());
    return ids;
  }
  void Complete(const std::string& job_id, v1::JobState state, const std::string& worker = "w1") {
    if (state == v1::SUCCEEDED) {
      ASSERT_TRUE(scheduler_->RecordAdapter(job_id, 1, false, std::string(64, 'b'), 10).ok());
    }
    v1::CompleteJobRequest done;
    done.set_worker_id(worker);
    done.set_job_id(job_id);
    done.set_attempt(1);
    done.set_final_state(state);
    ASSERT_TRUE(scheduler_->CompleteJob(done).ok());
  }

  fs::path dir_;
  int next_id_ = 0;
  std::set<std::string> registered_;
  FakeClock clock_;
  std::unique_ptr<storage::JobStore> store_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerSweepTest, ChildrenAreAdmittedStoredAndQueuedWithTheirValues) {
  auto sweep = scheduler_->CreateSweep(Request("token_gate.lambda", {"1e-6", "1e-5", "1e-4"}));
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->id(), "sweep-0");
  EXPECT_EQ(sweep->state(), v1::SWEEP_RUNNING);
  ASSERT_EQ(sweep->children_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const v1::SweepChild& row = sweep->children(i);
    EXPECT_EQ(row.state(), v1::QUEUED);
    auto job = scheduler_->GetJob(row.job_id());
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->sweep_id(), "sweep-0");
    EXPECT_EQ(job->display_name(), absl::StrCat("sweep-0 #", i));
    // The stored spec is the admitted one: defaults filled, the child's value set.
    EXPECT_EQ(job->spec().lora().r(), 8);
    EXPECT_DOUBLE_EQ(job->spec().token_gate().lambda(), std::stod(row.assignments(0).value()));
  }
  auto again = scheduler_->GetSweep("sweep-0");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->children(2).assignments(0).value(), "1e-4");
  EXPECT_EQ(scheduler_->ListJobs({})->jobs_size(), 3);
  // Children queue in order, behind the jobs before them and ahead of the jobs after them.
  EXPECT_EQ(Lease(4), (std::vector<std::string>{"job-1", "job-2", "job-3"}));
}

TEST_F(SchedulerSweepTest, ASweepWhoseChildWouldBeRefusedIsRefusedWholeNamingTheChild) {
  auto sweep = scheduler_->CreateSweep(Request("lora.r", {"8", "-1", "4"}));
  ASSERT_FALSE(sweep.ok());
  EXPECT_EQ(sweep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(sweep.status().message(), "children[1] (lora.r=-1): lora.r: "))
      << sweep.status().message();
  // A child on a dataset the server does not have: NotFound, still naming the child.
  auto missing = scheduler_->CreateSweep(Request("validation_dataset_id", {"ds-nope"}));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      absl::StartsWith(missing.status().message(), "children[0] (validation_dataset_id=ds-nope): "))
      << missing.status().message();
  // Too many children, and the sweep's own fields.
  auto big = scheduler_->CreateSweep(Request("seed", {"1", "2", "3", "4", "5", "6", "7"}));
  EXPECT_TRUE(absl::StartsWith(big.status().message(), "spec.axes: the grid makes more than 6"))
      << big.status().message();
  auto negative = scheduler_->CreateSweep(Request("seed", {"1"}, -1));
  EXPECT_TRUE(absl::StartsWith(negative.status().message(), "spec.max_concurrency: must be >= 0"))
      << negative.status().message();
  // Nothing was stored.
  EXPECT_EQ(scheduler_->ListJobs({})->jobs_size(), 0);
  EXPECT_EQ(scheduler_->ListSweeps({})->sweeps_size(), 0);
}

TEST_F(SchedulerSweepTest, AtMostMaxConcurrencyChildrenRunAndOtherJobsPassTheWaitingOnes) {
  ASSERT_TRUE(scheduler_->CreateSweep(Request("seed", {"1", "2", "3"}, 1)).ok());  // job-1..3
  v1::CreateJobRequest alone;
  *alone.mutable_spec() = Request("seed", {"1"}).spec().base();
  ASSERT_EQ(scheduler_->CreateJob(alone)->id(), "job-4");
  // One child runs; the job submitted after the sweep does not wait behind its children.
  EXPECT_EQ(Lease(3), (std::vector<std::string>{"job-1", "job-4"}));
  EXPECT_EQ(Lease(3), std::vector<std::string>{});
  Complete("job-1", v1::SUCCEEDED);
  EXPECT_EQ(Lease(3), std::vector<std::string>{"job-2"});
  // The limit survives a restart of the server (the running child re-claimed by its worker).
  Start();
  registered_.clear();
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  reg.add_running_job_ids("job-2");
  reg.add_running_job_ids("job-4");
  ASSERT_TRUE(scheduler_->Register(reg).ok());
  registered_.insert("w1");
  EXPECT_EQ(Lease(3), std::vector<std::string>{});
  Complete("job-2", v1::FAILED);
  EXPECT_EQ(Lease(3), std::vector<std::string>{"job-3"});
}

TEST_F(SchedulerSweepTest, CancelCancelsEveryChildAndTheSweepEndsCancelled) {
  ASSERT_TRUE(scheduler_->CreateSweep(Request("seed", {"1", "2", "3"})).ok());
  ASSERT_EQ(Lease(1), std::vector<std::string>{"job-1"});
  auto cancelling = scheduler_->CancelSweep("sweep-0");
  ASSERT_TRUE(cancelling.ok()) << cancelling.status();
  EXPECT_EQ(cancelling->state(), v1::SWEEP_CANCELLING);
  EXPECT_EQ(cancelling->children(0).state(), v1::CANCELLING);
  EXPECT_EQ(cancelling->children(1).state(), v1::CANCELLED);
  EXPECT_EQ(cancelling->children(2).state(), v1::CANCELLED);
  EXPECT_EQ(Lease(3), std::vector<std::string>{});
  Complete("job-1", v1::CANCELLED);
  auto cancelled = scheduler_->CancelSweep("sweep-0");  // idempotent
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::SWEEP_CANCELLED);
  EXPECT_EQ(scheduler_->GetSweep("sweep-0")->state(), v1::SWEEP_CANCELLED);
  EXPECT_EQ(scheduler_->CancelSweep("sweep-9").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerSweepTest, TheBestChildIsNamedAndAnEndedSweepIgnoresCancel) {
  ASSERT_TRUE(scheduler_->CreateSweep(Request("seed", {"1", "2"})).ok());
  ASSERT_EQ(Lease(2), (std::vector<std::string>{"job-1", "job-2"}));
  for (auto [id, loss] : {std::pair<std::string, double>{"job-1", 2.5}, {"job-2", 1.25}}) {
    v1::HeartbeatRequest hb;
    hb.set_worker_id("w1");
    auto* r = hb.add_reports();
    r->set_job_id(id);
    r->set_attempt(1);
    r->mutable_progress()->set_step(5);
    r->mutable_progress()->set_has_eval(true);
    r->mutable_progress()->set_eval_loss(loss);
    ASSERT_TRUE(scheduler_->Heartbeat(hb).ok());
    Complete(id, v1::SUCCEEDED);
  }
  auto sweep = scheduler_->CancelSweep("sweep-0");
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->state(), v1::SWEEP_SUCCEEDED);
  EXPECT_EQ(sweep->best_job_id(), "job-2");
  EXPECT_DOUBLE_EQ(sweep->children(1).eval_loss(), 1.25);
}

TEST_F(SchedulerSweepTest, SubmittingIsIdempotentByRequestId) {
  v1::CreateSweepRequest req = Request("seed", {"1", "2"});
  req.set_request_id("r-1");
  auto first = scheduler_->CreateSweep(req);
  ASSERT_TRUE(first.ok());
  auto second = scheduler_->CreateSweep(req);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->id(), first->id());
  EXPECT_EQ(scheduler_->ListJobs({})->jobs_size(), 2);
  req.mutable_spec()->mutable_axes(0)->add_values("3");
  EXPECT_EQ(scheduler_->CreateSweep(req).status().code(), absl::StatusCode::kAlreadyExists);
  auto list = scheduler_->ListSweeps({});
  ASSERT_EQ(list->sweeps_size(), 1);
  EXPECT_EQ(list->sweeps(0).children_size(), 2);
}

// The paper's percentage study: a sweep over selection.fraction keeps 25%, 50% and 100% of a
// gated run's modules with the lowest sparsity; each child's stored spec names its modules.
TEST_F(SchedulerSweepTest, ASweepOverTheSelectedFractionChoosesModulesPerChild) {
  v1::CreateJobRequest gated;  // LoRA with the token gate on
  *gated.mutable_spec() = Request("seed", {"1"}).spec().base();
  auto a = scheduler_->CreateJob(gated);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(Lease(1), std::vector<std::string>{a->id()});
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  v1::ProgressReport* r = hb.add_reports();
  r->set_job_id(a->id());
  r->set_attempt(1);
  r->mutable_progress()->set_step(10);
  const std::pair<const char*, double> gates[] = {{"model.layers.0.self_attn.q_proj", 0.5},
                                                  {"model.layers.0.self_attn.v_proj", 0.1},
                                                  {"model.layers.1.self_attn.q_proj", 0.9},
                                                  {"model.layers.1.self_attn.v_proj", 0.3}};
  for (const auto& [module, sparsity] : gates) {
    auto* g = r->mutable_progress()->add_gates();
    g->set_module(module);
    g->set_sparsity(sparsity);
  }
  ASSERT_TRUE(scheduler_->Heartbeat(hb).ok());
  Complete(a->id(), v1::SUCCEEDED);

  v1::CreateSweepRequest study = Request("selection.fraction", {"0.25", "0.5", "1"});
  v1::JobSpec* base = study.mutable_spec()->mutable_base();
  base->set_method(v1::DORA);
  base->mutable_token_gate()->set_enabled(false);
  base->mutable_selection()->set_from_job(a->id());
  base->mutable_selection()->set_criterion(v1::ModuleSelection::LOWEST_SPARSITY);
  auto sweep = scheduler_->CreateSweep(study);
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  std::vector<std::vector<std::string>> chosen;
  for (const auto& child : sweep->children()) {
    const v1::JobSpec spec = scheduler_->GetJob(child.job_id())->spec();
    chosen.emplace_back(spec.target_modules().begin(), spec.target_modules().end());
    EXPECT_EQ(spec.selection().from_job(), a->id());  // the choice is on record
  }
  EXPECT_EQ(chosen, (std::vector<std::vector<std::string>>{
                        {"model.layers.0.self_attn.v_proj"},
                        {"model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.v_proj"},
                        {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                         "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}}));
}

}  // namespace
}  // namespace peftd::server
