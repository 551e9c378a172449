#include "server/init_from_check.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace peftd::server {
namespace {

bool IsFinalState(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED;
}

std::string KeptSteps(const v1::Job& job) {
  if (job.checkpoints_size() == 0) return "it keeps none";
  std::vector<int64_t> steps;
  for (const auto& cp : job.checkpoints()) steps.push_back(cp.step());
  return absl::StrCat("it keeps ", absl::StrJoin(steps, ", "));
}

// The rank that shapes the method's tensors (0 for AdaDHP, whose shapes follow the model).
int64_t RankOf(const v1::JobSpec& s) {
  switch (s.method()) {
    case v1::LORA:
    case v1::DORA:
      return s.lora().r();
    case v1::ADALORA:
      return s.adalora().init_r();
    case v1::HUT:
      return s.hut().r();
    default:
      return 0;
  }
}

absl::Status Differs(const std::string& job, const std::string& what, const std::string& theirs,
                     const std::string& ours) {
  return absl::InvalidArgumentError(
      absl::StrCat("init_from: job ", job, " trained with ", what, " ", theirs, ", this job has ",
                   ours, "; a job continues from weights of its own shapes"));
}

}  // namespace

absl::Status CheckInitFrom(const v1::JobSpec& spec, const SpecOnModel& resolved,
                           const model::ModelConfig& config, AdmissionSources& sources) {
  const std::string& id = spec.init_from().job();
  absl::StatusOr<v1::Job> source = sources.GetJob(id);
  if (absl::IsNotFound(source.status())) {
    return absl::NotFoundError(absl::StrCat("init_from.job: no job '", id, "' on this server"));
  }
  RETURN_IF_ERROR(source.status());
  if (!IsFinalState(source->state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "init_from.job: job ", id, " is ", v1::JobState_Name(source->state()),
        "; a job starts from one that has ended (until then its checkpoints come and go)"));
  }
  const int64_t step = spec.init_from().step();
  if (step == 0 && source->state() != v1::SUCCEEDED) {
    return absl::FailedPreconditionError(
        absl::StrCat("init_from.job: job ", id, " ended ", v1::JobState_Name(source->state()),
                     " and has no adapter; give init_from.step of a kept checkpoint (",
                     KeptSteps(*source), ")"));
  }
  if (step > 0) {
    bool kept = false;
    for (const auto& cp : source->checkpoints()) kept = kept || cp.step() == step;
    if (!kept) {
      return absl::FailedPreconditionError(absl::StrCat("init_from.step: job ", id,
                                                        " keeps no checkpoint of step ", step, "; ",
                                                        KeptSteps(*source)));
    }
  }
  const v1::JobSpec& theirs = source->spec();
  if (theirs.base_model() != spec.base_model()) {
    return Differs(id, "base model", theirs.base_model(), spec.base_model());
  }
  if (theirs.method() != spec.method()) {
    return Differs(id, "method", v1::Method_Name(theirs.method()), v1::Method_Name(spec.method()));
  }
  if (theirs.token_gate().enabled() != spec.token_gate().enabled()) {
    return Differs(id, "the token gate", theirs.token_gate().enabled() ? "on" : "off",
                   spec.token_gate().enabled() ? "on" : "off");
  }
  if (RankOf(theirs) != RankOf(spec)) {
    return Differs(id, "rank", absl::StrCat(RankOf(theirs)), absl::StrCat(RankOf(spec)));
  }
  if (theirs.task() != spec.task() || theirs.num_labels() != spec.num_labels()) {
    return Differs(
        id, "task",
        absl::StrCat(v1::TaskType_Name(theirs.task()), "/", theirs.num_labels(), " labels"),
        absl::StrCat(v1::TaskType_Name(spec.task()), "/", spec.num_labels(), " labels"));
  }
  ASSIGN_OR_RETURN(SpecOnModel theirs_resolved, ResolveSpecOnModel(theirs, config));
  const auto& a = theirs_resolved.adapted;
  const auto& b = resolved.adapted;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i].name : "(none)";
    const std::string y = i < b.size() ? b[i].name : "(none)";
    if (x != y) {
      return absl::InvalidArgumentError(absl::StrCat(
          "init_from: job ", id, " adapted ", a.size(), " modules, this job ", b.size(),
          " (first difference: ", x, " vs ", y,
          "); target_modules, exclude_modules and layers_to_transform must select the same "
          "modules"));
    }
  }
  return absl::OkStatus();
}

}  // namespace peftd::server
