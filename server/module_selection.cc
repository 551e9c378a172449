#include "server/module_selection.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/job_spec_model.h"
#include "common/status.h"

namespace peftd::server {
namespace {

struct Candidate {
  std::string module;
  double score = 0;  // the criterion's figure: gate sparsity, or a mean output norm
  size_t order = 0;  // model order
};

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> SelectModules(const v1::JobSpec& spec,
                                                       AdmissionSources& sources) {
  const v1::ModuleSelection& sel = spec.selection();
  if (sel.from_job().empty())
    return Invalid("selection.from_job", "required: the job to choose from");
  if (sel.criterion() == v1::ModuleSelection::CRITERION_UNSPECIFIED ||
      !v1::ModuleSelection::Criterion_IsValid(sel.criterion())) {
    return Invalid(
        "selection.criterion",
        "required: LOWEST_SPARSITY, HIGHEST_SPARSITY, NORM_RELATIVE, NORM_ABS or RANDOM");
  }
  if ((sel.fraction() > 0) == (sel.top_k() > 0)) {
    return Invalid("selection", "give fraction (in (0, 1]) or top_k (>= 1), one of them");
  }
  if (!(sel.fraction() <= 1) || sel.top_k() < 0) {
    return Invalid(sel.fraction() > 1 ? "selection.fraction" : "selection.top_k",
                   "out of range; fraction is in (0, 1], top_k >= 1");
  }
  if (spec.target_modules_size() > 0) {
    return Invalid("selection",
                   "target_modules is given too; a selection chooses them, give one or the other");
  }
  absl::StatusOr<v1::Job> source = sources.GetJob(sel.from_job());
  if (absl::IsNotFound(source.status())) {
    return absl::NotFoundError(
        absl::StrCat("selection.from_job: no job '", sel.from_job(), "' on this server"));
  }
  RETURN_IF_ERROR(source.status());
  if (source->state() != v1::SUCCEEDED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "selection.from_job: job ", sel.from_job(), " is ", v1::JobState_Name(source->state()),
        "; modules are chosen from a job that SUCCEEDED"));
  }
  if (source->spec().base_model() != spec.base_model()) {
    return Invalid(
        "selection.from_job",
        absl::StrCat("job ", sel.from_job(), " trained base model '", source->spec().base_model(),
                     "', this job '", spec.base_model(), "'"));
  }
  // The pool: the modules from_job adapted, in model order.
  ASSIGN_OR_RETURN(model::ModelConfig config, sources.ReadModelConfig(spec.base_model()));
  ASSIGN_OR_RETURN(SpecOnModel theirs, ResolveSpecOnModel(source->spec(), config));
  std::vector<Candidate> pool;
  for (const auto& m : theirs.adapted) pool.push_back({m.name, 0, pool.size()});
  const v1::ModuleSelection::Criterion criterion = sel.criterion();
  const bool by_norm =
      criterion == v1::ModuleSelection::NORM_RELATIVE || criterion == v1::ModuleSelection::NORM_ABS;
  const bool by_sparsity = criterion == v1::ModuleSelection::LOWEST_SPARSITY ||
                           criterion == v1::ModuleSelection::HIGHEST_SPARSITY;
  if (by_sparsity || by_norm) {
    std::map<std::string, double> score;
    if (by_sparsity) {
      for (const auto& g : source->progress().gates()) score[g.module()] = g.sparsity();
    } else {
      for (const auto& m : source->progress().module_norms()) {
        score[m.module()] =
            criterion == v1::ModuleSelection::NORM_RELATIVE ? m.relative() : m.absolute();
      }
    }
    const char* what = by_sparsity ? "gate sparsity" : "module output norms";
    if (score.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "selection.from_job: job ", sel.from_job(), " recorded no ", what,
          by_sparsity ? "; choose by sparsity from a job trained with the token gate"
                      : "; it ran on a worker that does not record them, or ended before its "
                        "first step"));
    }
    for (Candidate& c : pool) {
      auto it = score.find(c.module);
      if (it == score.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "selection.from_job: job ", sel.from_job(), " recorded no ", what, " of ", c.module));
      }
      c.score = it->second;
    }
  }
  const size_t n = pool.size();
  const int64_t k =
      sel.top_k() > 0 ? sel.top_k() : std::max<int64_t>(1, std::llround(sel.fraction() * n));
  if (k > static_cast<int64_t>(n)) {
    return Invalid("selection.top_k", absl::StrCat(k, " is more than the ", n, " modules job ",
                                                   sel.from_job(), " adapted"));
  }
  if (by_sparsity || by_norm) {
    // Ties keep model order. Only S_low keeps the lowest figures; the others keep the highest.
    const bool lowest = criterion == v1::ModuleSelection::LOWEST_SPARSITY;
    std::stable_sort(pool.begin(), pool.end(), [lowest](const Candidate& a, const Candidate& b) {
      return lowest ? a.score < b.score : a.score > b.score;
    });
  } else {
    // Fisher-Yates on the seed's own stream: the same seed picks the same modules everywhere.
    std::mt19937_64 rng(sel.seed());
    for (size_t i = n - 1; i > 0; --i) std::swap(pool[i], pool[rng() % (i + 1)]);
  }
  pool.resize(k);
  std::sort(pool.begin(), pool.end(),
            [](const Candidate& a, const Candidate& b) { return a.order < b.order; });
  std::vector<std::string> chosen;
  for (const Candidate& c : pool) chosen.push_back(c.module);
  return chosen;
}

}  // namespace peftd::server
