// JobSpec.selection at submit: the chosen modules (by the paper's criteria) land in the stored
// spec's target_modules in model order; each refusal names the selection field.
#include "server/module_selection.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "common/job_spec.h"
#include "tests/server/test_model.h"

namespace peftd::server {
namespace {

const char* const kModules[] = {
    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"};

class Sources : public AdmissionSources {
 public:
  Sources() {
    config = *model::ParseModelConfig(peftd::testing::kTestModelConfigJson);
    v1::Job gated;
    gated.set_id("job-gated");
    gated.set_state(v1::SUCCEEDED);
    gated.mutable_spec()->set_base_model("tiny");
    gated.mutable_spec()->set_method(v1::DORA);
    gated.mutable_spec()->mutable_token_gate()->set_enabled(true);
    *gated.mutable_spec() = WithDefaults(gated.spec());
    const double sparsity[] = {0.5, 0.1, 0.9, 0.3};
    for (int i = 0; i < 4; ++i) {
      auto* g = gated.mutable_progress()->add_gates();
      g->set_module(kModules[i]);
      g->set_sparsity(sparsity[i]);
    }
    // Ordered unlike the sparsities and unlike each other.
    const double relative[] = {0.3, 0.1, 0.2, 0.4};
    const double absolute[] = {1.0, 3.0, 2.0, 0.5};
    for (int i = 0; i < 4; ++i) {
      auto* m = gated.mutable_progress()->add_module_norms();
      m->set_module(kModules[i]);
      m->set_relative(relative[i]);
      m->set_absolute(absolute[i]);
      m->set_tokens(100);
    }
    jobs["job-gated"] = gated;
    v1::Job plain = gated;
    plain.set_id("job-plain");
    plain.mutable_progress()->clear_gates();
    jobs["job-plain"] = plain;
    v1::Job unprobed = plain;
    unprobed.set_id("job-unprobed");
    unprobed.mutable_progress()->clear_module_norms();
    jobs["job-unprobed"] = unprobed;
    v1::Job running = gated;
    running.set_id("job-running");
    running.set_state(v1::RUNNING);
    jobs["job-running"] = running;
  }
  absl::StatusOr<model::ModelConfig> ReadModelConfig(const std::string&) override { return config; }
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& id) override {
    v1::Dataset d;
    d.set_id(id);
    d.set_format("text");
    return d;
  }
  std::optional<WorkerMemory> LargestWorkerMemory() override { return std::nullopt; }
  absl::StatusOr<v1::Job> GetJob(const std::string& id) override {
    auto it = jobs.find(id);
    if (it == jobs.end()) return absl::NotFoundError("no job");
    return it->second;
  }
  model::ModelConfig config;
  std::map<std::string, v1::Job> jobs;
};

absl::StatusOr<v1::JobSpec> Admit(const std::function<void(v1::ModuleSelection*)>& edit,
                                  const std::function<void(v1::JobSpec*)>& spec_edit = nullptr) {
  Sources sources;
  v1::CreateJobRequest req;
  req.mutable_spec()->set_base_model("tiny");
  req.mutable_spec()->set_method(v1::DORA);
  req.mutable_spec()->set_training_dataset_id("ds-1");
  v1::ModuleSelection* sel = req.mutable_spec()->mutable_selection();
  sel->set_from_job("job-gated");
  edit(sel);
  if (spec_edit) spec_edit(req.mutable_spec());
  return AdmitJob(req, sources);
}

std::vector<std::string> Targets(const absl::StatusOr<v1::JobSpec>& spec) {
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (!spec.ok()) return {};
  return {spec->target_modules().begin(), spec->target_modules().end()};
}

TEST(ModuleSelection, TheCriteriaChooseByGateSparsityInModelOrder) {
  // Sparsity: l0.q 0.5, l0.v 0.1, l1.q 0.9, l1.v 0.3.
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::LOWEST_SPARSITY);
              s->set_fraction(0.5);
            })),
            (std::vector<std::string>{kModules[1], kModules[3]}));
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::HIGHEST_SPARSITY);
              s->set_top_k(3);
            })),
            (std::vector<std::string>{kModules[0], kModules[2], kModules[3]}));
  // A fraction rounds, and keeps at least one module.
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::HIGHEST_SPARSITY);
              s->set_fraction(0.01);
            })),
            (std::vector<std::string>{kModules[2]}));
}

TEST(ModuleSelection, NormRelativeKeepsTheHighestMeanRelativeNormOfAnyJob) {
  // ‖M(x)‖/‖W0 x‖: l0.q 0.3, l0.v 0.1, l1.q 0.2, l1.v 0.4; the job needs no gate.
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::NORM_RELATIVE);
              s->set_from_job("job-plain");
              s->set_fraction(0.5);
            })),
            (std::vector<std::string>{kModules[0], kModules[3]}));
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::NORM_RELATIVE);
              s->set_top_k(3);
            })),
            (std::vector<std::string>{kModules[0], kModules[2], kModules[3]}));
}

TEST(ModuleSelection, NormAbsKeepsTheHighestMeanNorm) {
  // ‖M(x)‖: l0.q 1.0, l0.v 3.0, l1.q 2.0, l1.v 0.5.
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::NORM_ABS);
              s->set_from_job("job-plain");
              s->set_fraction(0.5);
            })),
            (std::vector<std::string>{kModules[1], kModules[2]}));
  EXPECT_EQ(Targets(Admit([](v1::ModuleSelection* s) {
              s->set_criterion(v1::ModuleSelection::NORM_ABS);
              s->set_top_k(1);
            })),
            (std::vector<std::string>{kModules[1]}));
}

TEST(ModuleSelection, RandomIsTheSameForTheSameSeed) {
  auto pick = [](uint64_t seed) {
    return Targets(Admit([seed](v1::ModuleSelection* s) {
      s->set_criterion(v1::ModuleSelection::RANDOM);
      s->set_from_job("job-plain");  // no gate needed
      s->set_top_k(2);
      s->set_seed(seed);
    }));
  };
  const auto a = pick(7);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(pick(7), a);
  std::set<std::vector<std::string>> seen;
  for (uint64_t seed = 0; seed < 20; ++seed) seen.insert(pick(seed));
  EXPECT_GT(seen.size(), 1u);  // the seed matters
}

TEST(ModuleSelection, RefusalsNameTheField) {
  struct Case {
    std::function<void(v1::ModuleSelection*)> edit;
    std::function<void(v1::JobSpec*)> spec_edit;
    absl::StatusCode code;
    std::string prefix;
  };
  auto low = [](v1::ModuleSelection* s) { s->set_criterion(v1::ModuleSelection::LOWEST_SPARSITY); };
  const std::vector<Case> cases = {
      {[](v1::ModuleSelection* s) { s->set_fraction(0.5); }, nullptr,
       absl::StatusCode::kInvalidArgument, "selection.criterion: required"},
      {low, nullptr, absl::StatusCode::kInvalidArgument, "selection: give fraction"},
      {[&](v1::ModuleSelection* s) {
         low(s);
         s->set_fraction(0.5);
         s->set_top_k(1);
       },
       nullptr, absl::StatusCode::kInvalidArgument, "selection: give fraction"},
      {[&](v1::ModuleSelection* s) {
         low(s);
         s->set_top_k(5);
       },
       nullptr, absl::StatusCode::kInvalidArgument,
       "selection.top_k: 5 is more than the 4 modules job job-gated adapted"},
      {[&](v1::ModuleSelection* s) {
         low(s);
         s->set_fraction(0.5);
         s->set_from_job("job-nope");
       },
       nullptr, absl::StatusCode::kNotFound, "selection.from_job: no job 'job-nope'"},
      {[&](v1::ModuleSelection* s) {
         low(s);
         s->set_fraction(0.5);
         s->set_from_job("job-running");
       },
       nullptr, absl::StatusCode::kFailedPrecondition,
       "selection.from_job: job job-running is RUNNING"},
      {[&](v1::ModuleSelection* s) {
         low(s);
         s->set_fraction(0.5);
         s->set_from_job("job-plain");
       },
       nullptr, absl::StatusCode::kFailedPrecondition,
       "selection.from_job: job job-plain recorded no gate sparsity"},
      {[](v1::ModuleSelection* s) {
         s->set_criterion(v1::ModuleSelection::NORM_ABS);
         s->set_fraction(0.5);
         s->set_from_job("job-unprobed");
       },
       nullptr, absl::StatusCode::kFailedPrecondition,
       "selection.from_job: job job-unprobed recorded no module output norms"},
      {[&](v1::ModuleSelection* s) {
         low(s);
         s->set_fraction(0.5);
       },
       [](v1::JobSpec* s) { s->add_target_modules("q_proj"); }, absl::StatusCode::kInvalidArgument,
       "selection: target_modules is given too"},
  };
  for (const Case& c : cases) {
    auto spec = Admit(c.edit, c.spec_edit);
    ASSERT_FALSE(spec.ok()) << c.prefix;
    EXPECT_EQ(spec.status().code(), c.code) << spec.status();
    EXPECT_TRUE(absl::StartsWith(spec.status().message(), c.prefix))
        << spec.status().message() << "\nexpected to start with: " << c.prefix;
  }
}

}  // namespace
}  // namespace peftd::server
