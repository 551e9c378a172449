#include "server/job_admission.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/job_spec.h"
#include "common/job_spec_model.h"
#include "common/memory_estimate.h"
#include "common/status.h"
#include "server/init_from_check.h"
#include "server/module_selection.h"

namespace peftd::server {
namespace {

absl::Status CheckRequestFields(const v1::CreateJobRequest& req) {
  if (req.request_id().size() > kMaxRequestIdChars) {
    return absl::InvalidArgumentError(absl::StrCat("request_id: at most ", kMaxRequestIdChars,
                                                   " characters, got ", req.request_id().size()));
  }
  if (req.display_name().size() > kMaxDisplayNameChars) {
    return absl::InvalidArgumentError(absl::StrCat("display_name: at most ", kMaxDisplayNameChars,
                                                   " characters, got ", req.display_name().size()));
  }
  if (req.labels_size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: at most ", kMaxLabels, " labels, got ", req.labels_size()));
  }
  for (const auto& [key, value] : req.labels()) {
    if (key.empty() || key.size() > kMaxLabelKeyChars) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels: key '", key.substr(0, kMaxLabelKeyChars + 1), "' must have 1 to ",
                       kMaxLabelKeyChars, " characters"));
    }
    if (value.size() > kMaxLabelValueChars) {
      return absl::InvalidArgumentError(absl::StrCat("labels.", key, ": value must have at most ",
                                                     kMaxLabelValueChars, " characters"));
    }
  }
  return absl::OkStatus();
}

// The dataset `id` of `field`, in a format the task can train on; its size in bytes.
absl::StatusOr<int64_t> CheckDataset(AdmissionSources& sources, const v1::JobSpec& spec,
                                     const char* field, const std::string& id) {
  absl::StatusOr<v1::Dataset> ds = sources.GetDataset(id);
  if (absl::IsNotFound(ds.status())) {
    return absl::NotFoundError(absl::StrCat(field, ": no dataset '", id,
                                            "' on this server; upload the file first "
                                            "(peftctl datasets upload FILE) and use its id"));
  }
  RETURN_IF_ERROR(ds.status());
  if (ds->bad_lines() > 0 && !spec.skip_bad_lines()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "skip_bad_lines: ", field, " ", id,
        ds->filename().empty() ? "" : absl::StrCat(" (", ds->filename(), ")"), " has ",
        ds->bad_lines(), ds->bad_lines() == 1 ? " bad line" : " bad lines", " of ", ds->lines(),
        "; set skip_bad_lines: true (peftctl submit --skip-bad-lines) to train on its valid "
        "lines, or fix the file and upload it again"));
  }
  const bool classification = absl::StartsWith(ds->format(), "classification");
  const bool seq2seq = ds->format() == "input_target";
  if (!ds->format().empty() && (classification != (spec.task() == v1::SEQ_CLS) ||
                                seq2seq != (spec.task() == v1::SEQ_2_SEQ_LM))) {
    const v1::TaskType task =
        spec.task() == v1::TASK_TYPE_UNSPECIFIED ? v1::CAUSAL_LM : spec.task();
    return absl::InvalidArgumentError(absl::StrCat(field, ": dataset ", id, " holds ", ds->format(),
                                                   " records, which task ", v1::TaskType_Name(task),
                                                   " cannot train on"));
  }
  return std::max<int64_t>(ds->size_bytes(), 0);
}

}  // namespace

int64_t AdvertisedMemory(const v1::RegisterRequest& registration) {
  int64_t bytes = 0;
  for (const v1::Device& d : registration.devices()) bytes = std::max(bytes, d.memory_bytes());
  return bytes;
}

std::optional<WorkerMemory> LargestWorkerMemory(const std::vector<LiveWorker>& live,
                                                int64_t local_host_bytes) {
  if (live.empty()) {
    if (local_host_bytes <= 0) return std::nullopt;
    return WorkerMemory{local_host_bytes, "this host (its local workers have not registered yet)"};
  }
  const LiveWorker* largest = nullptr;
  for (const LiveWorker& w : live) {
    if (w.memory_bytes <= 0) return std::nullopt;
    if (largest == nullptr || w.memory_bytes > largest->memory_bytes) largest = &w;
  }
  return WorkerMemory{largest->memory_bytes,
                      absl::StrCat(live.size() == 1 ? "the only worker (" : "the largest worker (",
                                   largest->id, ")")};
}

absl::StatusOr<v1::JobSpec> AdmitJob(const v1::CreateJobRequest& req, AdmissionSources& sources) {
  RETURN_IF_ERROR(CheckRequestFields(req));
  v1::JobSpec given = req.spec();
  if (given.has_selection()) {
    // The chosen names go into the stored spec: the run reproduces without the earlier job.
    ASSIGN_OR_RETURN(std::vector<std::string> chosen, SelectModules(given, sources));
    for (const std::string& m : chosen) given.add_target_modules(m);
  }
  v1::JobSpec spec = WithDefaults(given);
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  ASSIGN_OR_RETURN(model::ModelConfig config, sources.ReadModelConfig(spec.base_model()));
  ApplyModelDefaults(given, config, &spec);
  ASSIGN_OR_RETURN(SpecOnModel resolved, ResolveSpecOnModel(spec, config));
  ASSIGN_OR_RETURN(int64_t dataset_bytes,
                   CheckDataset(sources, spec, "training_dataset_id", spec.training_dataset_id()));
  if (!spec.validation_dataset_id().empty()) {
    ASSIGN_OR_RETURN(int64_t validation_bytes, CheckDataset(sources, spec, "validation_dataset_id",
                                                            spec.validation_dataset_id()));
    dataset_bytes += validation_bytes;
  }
  if (spec.has_init_from()) {
    RETURN_IF_ERROR(CheckInitFrom(spec, resolved, config, sources));
  }
  if (std::optional<WorkerMemory> memory = sources.LargestWorkerMemory()) {
    RETURN_IF_ERROR(CheckMemoryFits(EstimatePeakMemory(spec, resolved, dataset_bytes),
                                    memory->bytes, memory->what));
  }
  return spec;
}

}  // namespace peftd::server
