#include "common/job_spec.h"

#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/module_pattern.h"
#include "common/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace peftd {
namespace {

constexpr int kMaxKeepCheckpoints = 1000;

// Whether the spec's method_params (when set) belong to its method.
bool ParamsMatchMethod(const v1::JobSpec& s) {
  return s.method_params_case() == v1::JobSpec::METHOD_PARAMS_NOT_SET ||
         s.method_params_case() == MethodParamsCaseOf(s.method());
}

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Caps of docs/job-spec.md ("Ranges").
constexpr double kMaxRank = 4096;
constexpr double kMaxAlpha = 1e6;
constexpr double kMaxSteps = 1e9;
constexpr double kMaxModules = 65536;
constexpr double kMaxLabels = 65536;
constexpr double kMaxEpochs = 10000;
constexpr double kMaxBatchSize = 65536;
constexpr double kMaxLearningRate = 10;
constexpr double kMaxWeightDecay = 10;
constexpr double kMaxSeqLen = 1 << 20;
constexpr double kMaxAttempts = 100;
constexpr double kMaxThreads = 1024;
constexpr double kMaxPatience = 10000;
// Ranks of one gang: far above what a CPU cluster runs a PEFT job on, and bounded so a typo does
// not queue a gang that reserves every slot of the cluster for ever.
constexpr double kMaxWorkers = 64;
constexpr size_t kMaxPathChars = 4096;
constexpr size_t kMaxDatasetIdChars = 256;
constexpr size_t kMaxLabelNameChars = 256;

// A bound or a value as users write it: integers without exponent, other numbers as %g.
std::string Number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrCat(v);
}

bool IsFloating(const google::protobuf::FieldDescriptor& f) {
  using FD = google::protobuf::FieldDescriptor;
  return f.cpp_type() == FD::CPPTYPE_FLOAT || f.cpp_type() == FD::CPPTYPE_DOUBLE;
}

// Element `index` (-1: the singular value) of a numeric field, as a double (exact for every
// integer within the caps; larger ones only need to compare as larger).
double NumberAt(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor& f,
                int index) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection& r = *m.GetReflection();
  const bool rep = index >= 0;
  switch (f.cpp_type()) {
    case FD::CPPTYPE_INT32:
      return rep ? r.GetRepeatedInt32(m, &f, index) : r.GetInt32(m, &f);
    case FD::CPPTYPE_INT64:
      return static_cast<double>(rep ? r.GetRepeatedInt64(m, &f, index) : r.GetInt64(m, &f));
    case FD::CPPTYPE_UINT32:
      return rep ? r.GetRepeatedUInt32(m, &f, index) : r.GetUInt32(m, &f);
    case FD::CPPTYPE_UINT64:
      return static_cast<double>(rep ? r.GetRepeatedUInt64(m, &f, index) : r.GetUInt64(m, &f));
    case FD::CPPTYPE_FLOAT:
      return rep ? r.GetRepeatedFloat(m, &f, index) : r.GetFloat(m, &f);
    case FD::CPPTYPE_DOUBLE:
      return rep ? r.GetRepeatedDouble(m, &f, index) : r.GetDouble(m, &f);
    default:
      return 0;
  }
}

// The value as the message shows it: integers exactly (even past 2^53), floats as %g.
std::string ValueText(const google::protobuf::Message& m,
                      const google::protobuf::FieldDescriptor& f, int index) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection& r = *m.GetReflection();
  const bool rep = index >= 0;
  switch (f.cpp_type()) {
    case FD::CPPTYPE_INT64:
      return absl::StrCat(rep ? r.GetRepeatedInt64(m, &f, index) : r.GetInt64(m, &f));
    case FD::CPPTYPE_UINT64:
      return absl::StrCat(rep ? r.GetRepeatedUInt64(m, &f, index) : r.GetUInt64(m, &f));
    default:
      return Number(NumberAt(m, f, index));
  }
}

// The message holding the last component of `path` and that component's descriptor; the
// message is null when a parameter message on the way is not set (nothing to check).
std::pair<const google::protobuf::Message*, const google::protobuf::FieldDescriptor*> Resolve(
    const google::protobuf::Message& root, absl::string_view path) {
  const google::protobuf::Message* m = &root;
  std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const auto* f = m->GetDescriptor()->FindFieldByName(std::string(parts[i]));
    if (f == nullptr || f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      return {nullptr, nullptr};
    }
    if (!m->GetReflection()->HasField(*m, f)) return {nullptr, f};
    m = &m->GetReflection()->GetMessage(*m, f);
  }
  return {m, m->GetDescriptor()->FindFieldByName(std::string(parts.back()))};
}

absl::Status CheckRange(const v1::JobSpec& s, const FieldRange& range) {
  const auto [m, f] = Resolve(s, range.field);
  if (m == nullptr || f == nullptr) return absl::OkStatus();
  const int n = f->is_repeated() ? m->GetReflection()->FieldSize(*m, f) : 1;
  for (int i = 0; i < n; ++i) {
    const int index = f->is_repeated() ? i : -1;
    const double v = NumberAt(*m, *f, index);
    const bool ok = std::isfinite(v) && (range.min_open ? v > range.min : v >= range.min) &&
                    (range.max_open ? v < range.max : v <= range.max);
    if (ok) continue;
    const std::string field =
        f->is_repeated() ? absl::StrCat(range.field, "[", i, "]") : std::string(range.field);
    return FieldError(field,
                      absl::StrCat("must be ", IsFloating(*f) ? "a finite number " : "", "in ",
                                   RangeText(range), ", got ", ValueText(*m, *f, index)));
  }
  return absl::OkStatus();
}

// Calls `check(message, field, path, index)` for every element of every set scalar field of `m`
// and of its set sub-messages (index -1: a singular field), until one returns an error.
using ScalarCheck =
    std::function<absl::Status(const google::protobuf::Message&,
                               const google::protobuf::FieldDescriptor&, const std::string&, int)>;
absl::Status ForEachScalar(const google::protobuf::Message& m, const std::string& prefix,
                           const ScalarCheck& check) {
  const google::protobuf::Reflection& r = *m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r.ListFields(m, &fields);
  for (const auto* f : fields) {
    const std::string path = absl::StrCat(prefix, f->name());
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) continue;  // JobSpec has no repeated messages
      RETURN_IF_ERROR(ForEachScalar(r.GetMessage(m, f), path + ".", check));
      continue;
    }
    const int n = f->is_repeated() ? r.FieldSize(m, f) : 1;
    for (int i = 0; i < n; ++i) RETURN_IF_ERROR(check(m, *f, path, f->is_repeated() ? i : -1));
  }
  return absl::OkStatus();
}

// NaN and infinity in any float or double field, ranged or not (a disabled gate's s included).
absl::Status CheckFinite(const google::protobuf::Message& m,
                         const google::protobuf::FieldDescriptor& f, const std::string& path,
                         int index) {
  if (!IsFloating(f)) return absl::OkStatus();
  const double v = NumberAt(m, f, index);
  if (std::isfinite(v)) return absl::OkStatus();
  return FieldError(path, absl::StrCat("must be a finite number, got ", Number(v)));
}

// Enum fields hold any number on the wire (proto3 keeps unknown values): each must name a value.
absl::Status CheckEnum(const google::protobuf::Message& m,
                       const google::protobuf::FieldDescriptor& f, const std::string& path,
                       int index) {
  if (f.cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_ENUM) return absl::OkStatus();
  const google::protobuf::Reflection& r = *m.GetReflection();
  const int v = index >= 0 ? r.GetRepeatedEnumValue(m, &f, index) : r.GetEnumValue(m, &f);
  if (f.enum_type()->FindValueByNumber(v) != nullptr) return absl::OkStatus();
  std::string known;
  for (int k = 0; k < f.enum_type()->value_count(); ++k) {
    const auto* value = f.enum_type()->value(k);
    if (value->number() == 0) continue;  // the UNSPECIFIED default
    absl::StrAppend(&known, known.empty() ? "" : ", ", value->name());
  }
  return FieldError(path,
                    absl::StrCat(v, " is not a ", f.enum_type()->name(), " (known: ", known, ")"));
}

}  // namespace

v1::JobSpec::MethodParamsCase MethodParamsCaseOf(v1::Method method) {
  switch (method) {
    case v1::LORA:
    case v1::DORA:
      return v1::JobSpec::kLora;
    case v1::ADALORA:
      return v1::JobSpec::kAdalora;
    case v1::HUT:
      return v1::JobSpec::kHut;
    case v1::ADADHP:
      return v1::JobSpec::kAdadhp;
    default:
      return v1::JobSpec::METHOD_PARAMS_NOT_SET;
  }
}

v1::JobSpec WithDefaults(const v1::JobSpec& in) {
  v1::JobSpec s = in;
  // Mismatched parameters are left as they are for ValidateJobSpec to name.
  switch (ParamsMatchMethod(s) ? s.method() : v1::METHOD_UNSPECIFIED) {
    case v1::LORA:
    case v1::DORA: {
      auto* p = s.mutable_lora();
      if (p->r() == 0) p->set_r(8);
      if (p->alpha() == 0) p->set_alpha(16);
      break;
    }
    case v1::ADALORA: {
      auto* p = s.mutable_adalora();
      if (p->init_r() == 0) p->set_init_r(12);
      if (p->target_r() == 0) p->set_target_r(8);
      if (p->alpha() == 0) p->set_alpha(32);
      if (p->delta_t() == 0) p->set_delta_t(1);
      if (p->beta1() == 0) p->set_beta1(0.85f);
      if (p->beta2() == 0) p->set_beta2(0.85f);
      if (p->orth_reg_weight() == 0) p->set_orth_reg_weight(0.5f);
      break;
    }
    case v1::HUT: {
      auto* p = s.mutable_hut();
      if (p->r() == 0) p->set_r(8);
      break;
    }
    case v1::ADADHP: {
      auto* p = s.mutable_adadhp();
      if (p->delta_t() == 0) p->set_delta_t(10);
      if (p->beta1() == 0) p->set_beta1(0.85f);
      if (p->beta2() == 0) p->set_beta2(0.85f);
      break;
    }
    default:
      break;
  }
  if (s.token_gate().enabled()) {
    auto* g = s.mutable_token_gate();
    if (g->s() == 0) g->set_s(4e-5);
    if (g->lambda() == 0) g->set_lambda(1e-6);
  }
  if (s.target_modules().empty()) {
    s.add_target_modules("q_proj");
    s.add_target_modules("v_proj");
  }
  if (s.task() == v1::TASK_TYPE_UNSPECIFIED) s.set_task(v1::CAUSAL_LM);
  if (s.chat_template().empty()) s.set_chat_template("chatml");
  if (s.epochs() == 0) s.set_epochs(1);
  if (s.batch_size() == 0) s.set_batch_size(8);
  if (s.gradient_accumulation_steps() == 0) s.set_gradient_accumulation_steps(1);
  if (s.learning_rate() == 0) s.set_learning_rate(2e-4);
  if (s.lr_schedule() == v1::LR_SCHEDULE_UNSPECIFIED) s.set_lr_schedule(v1::LINEAR);
  if (!s.has_max_grad_norm()) s.set_max_grad_norm(1.0);
  if (s.max_seq_len() == 0) s.set_max_seq_len(512);
  if (!s.has_truncate()) s.set_truncate(true);
  if (!s.has_packing()) s.set_packing(s.task() == v1::CAUSAL_LM);
  if (s.task() == v1::SEQ_2_SEQ_LM && s.max_target_len() == 0) s.set_max_target_len(128);
  if (!s.has_seed()) s.set_seed(42);
  if (s.checkpoint_interval_steps() == 0) s.set_checkpoint_interval_steps(50);
  if (s.max_attempts() == 0) s.set_max_attempts(3);
  if (s.keep_checkpoints() == 0) s.set_keep_checkpoints(3);
  if (s.workers() == 0) s.set_workers(1);
  return s;
}

const std::vector<FieldRange>& JobSpecRanges() {
  // docs/job-spec.md, "Ranges": the caps are far above any real job and keep every later
  // computation (steps, buffers, the memory estimate) inside int64 and the host.
  static const std::vector<FieldRange>* const kRanges = new std::vector<FieldRange>{
      {"lora.r", 1, kMaxRank},
      {"lora.alpha", 0, kMaxAlpha, /*min_open=*/true},
      {"lora.dropout", 0, 1, false, /*max_open=*/true},
      {"adalora.init_r", 1, kMaxRank},
      {"adalora.target_r", 0, kMaxRank},
      {"adalora.alpha", 0, kMaxAlpha, true},
      {"adalora.dropout", 0, 1, false, true},
      {"adalora.tinit", 0, kMaxSteps},
      {"adalora.tfinal", 0, kMaxSteps},
      {"adalora.delta_t", 1, kMaxSteps},
      {"adalora.beta1", 0, 1, true, true},
      {"adalora.beta2", 0, 1, true, true},
      {"adalora.orth_reg_weight", 0, kMaxAlpha},
      {"hut.r", 1, kMaxRank},
      {"adadhp.target_num", 0, kMaxModules},
      {"adadhp.tinit", 0, kMaxSteps},
      {"adadhp.tfinal", 0, kMaxSteps},
      {"adadhp.delta_t", 1, kMaxSteps},
      {"adadhp.beta1", 0, 1, true, true},
      {"adadhp.beta2", 0, 1, true, true},
      {"token_gate.s", 0, 1, true},
      {"token_gate.lambda", 0, 1},
      {"layers_to_transform", 0, kMaxLayersToTransform - 1},
      {"num_labels", 0, kMaxLabels},
      {"epochs", 1, kMaxEpochs},
      {"max_steps", 0, kMaxSteps},
      {"batch_size", 1, kMaxBatchSize},
      {"gradient_accumulation_steps", 1, kMaxBatchSize},
      {"learning_rate", 0, kMaxLearningRate, true},
      {"warmup_ratio", 0, 1, false, true},
      {"warmup_steps", 0, kMaxSteps},
      {"weight_decay", 0, kMaxWeightDecay},
      {"max_grad_norm", 0, kMaxAlpha},
      {"max_seq_len", 2, kMaxSeqLen},
      {"max_target_len", 0, kMaxSeqLen},
      {"eval_interval_steps", 0, kMaxSteps},
      {"checkpoint_interval_steps", 0, kMaxSteps},
      {"max_attempts", 1, kMaxAttempts},
      {"keep_checkpoints", 1, kMaxKeepCheckpoints},
      {"num_threads", 0, kMaxThreads},
      {"early_stopping_patience", 0, kMaxPatience},
      {"workers", 0, kMaxWorkers},
      {"init_from.step", 0, kMaxSteps},
      {"selection.fraction", 0, 1},
      {"selection.top_k", 0, kMaxModules},
  };
  return *kRanges;
}

const std::vector<std::string>& UnboundedJobSpecFields() {
  static const std::vector<std::string>* const kFree =
      new std::vector<std::string>{"seed", "selection.seed"};
  return *kFree;
}

std::string RangeText(const FieldRange& r) {
  return absl::StrCat(r.min_open ? "(" : "[", Number(r.min), ", ", Number(r.max),
                      r.max_open ? ")" : "]");
}

absl::Status ValidateJobSpec(const v1::JobSpec& s) {
  if (s.base_model().empty()) return FieldError("base_model", "required");
  if (s.base_model().size() > kMaxPathChars) {
    return FieldError("base_model", absl::StrCat("at most ", kMaxPathChars, " characters, got ",
                                                 s.base_model().size()));
  }
  if (s.method() == v1::METHOD_UNSPECIFIED || !v1::Method_IsValid(s.method())) {
    return FieldError("method", "required: one of LORA, DORA, ADALORA, HUT, ADADHP");
  }
  if (!ParamsMatchMethod(s)) {
    return FieldError("method_params", absl::StrCat("parameters do not belong to method ",
                                                    v1::Method_Name(s.method())));
  }
  for (const FieldRange& r : JobSpecRanges()) {
    // The gate's numbers mean nothing (and have no defaults) while it is off.
    if (absl::StartsWith(r.field, "token_gate.") && !s.token_gate().enabled()) continue;
    RETURN_IF_ERROR(CheckRange(s, r));
  }
  RETURN_IF_ERROR(ForEachScalar(s, "", CheckFinite));
  RETURN_IF_ERROR(ForEachScalar(s, "", CheckEnum));
  if (s.has_adalora()) {
    const auto& p = s.adalora();
    if (p.target_r() > p.init_r()) {
      return FieldError("adalora.target_r", absl::StrCat("must be in [0, init_r = ", p.init_r(),
                                                         "], got ", p.target_r()));
    }
    if (s.max_steps() > 0 && p.tinit() >= s.max_steps() - p.tfinal()) {
      return FieldError("adalora.tinit",
                        absl::StrCat("tinit (", p.tinit(), ") must be < max_steps - tfinal (",
                                     s.max_steps() - p.tfinal(), "): no step would prune"));
    }
  }
  if (s.has_adadhp()) {
    const auto& p = s.adadhp();
    if (p.tfinal() != 0 && p.tfinal() <= p.tinit()) {
      return FieldError("adadhp.tfinal", absl::StrCat("must be > tinit (", p.tinit(), ")"));
    }
  }
  RETURN_IF_ERROR(
      ModuleSelector::Compile(
          std::vector<std::string>(s.target_modules().begin(), s.target_modules().end()),
          std::vector<std::string>(s.exclude_modules().begin(), s.exclude_modules().end()),
          std::vector<int64_t>(s.layers_to_transform().begin(), s.layers_to_transform().end()))
          .status());
  if (s.has_init_from() && s.init_from().job().empty()) {
    return FieldError("init_from.job", "required: the id of the job to start from");
  }
  if (s.init_from().job().size() > kMaxDatasetIdChars) {
    return FieldError("init_from.job",
                      absl::StrCat("at most ", kMaxDatasetIdChars, " characters, got ",
                                   s.init_from().job().size()));
  }
  if (s.task() == v1::SEQ_CLS && s.num_labels() < 2) {
    return FieldError("num_labels", absl::StrCat("SEQ_CLS needs num_labels in [2, ",
                                                 Number(kMaxLabels), "], got ", s.num_labels()));
  }
  if (s.label_names_size() > kMaxLabels) {
    return FieldError("label_names", absl::StrCat("at most ", Number(kMaxLabels), " names, got ",
                                                  s.label_names_size()));
  }
  std::set<absl::string_view> names;
  for (int i = 0; i < s.label_names_size(); ++i) {
    const std::string& name = s.label_names(i);
    const std::string field = absl::StrCat("label_names[", i, "]");
    if (name.empty() || name.size() > kMaxLabelNameChars) {
      return FieldError(field, absl::StrCat("must have 1 to ", kMaxLabelNameChars,
                                            " characters, got ", name.size()));
    }
    if (!names.insert(name).second) {
      return FieldError(field, absl::StrCat("'", name, "' is given twice"));
    }
  }
  if (s.task() == v1::SEQ_CLS && s.label_names_size() != 0 &&
      s.label_names_size() != s.num_labels()) {
    return FieldError("label_names", absl::StrCat("has ", s.label_names_size(),
                                                  " names for num_labels = ", s.num_labels()));
  }
  if (s.training_dataset_id().empty()) return FieldError("training_dataset_id", "required");
  for (const auto& [field, id] :
       {std::pair<const char*, const std::string*>{"training_dataset_id", &s.training_dataset_id()},
        {"validation_dataset_id", &s.validation_dataset_id()}}) {
    if (id->size() > kMaxDatasetIdChars) {
      return FieldError(
          field, absl::StrCat("at most ", kMaxDatasetIdChars, " characters, got ", id->size()));
    }
  }
  if (const auto& t = s.chat_template(); t != "chatml" && t != "llama3" && t != "plain") {
    return FieldError("chat_template", absl::StrCat("unknown template '", t.substr(0, 64),
                                                    "' (known: chatml, llama3, plain)"));
  }
  if (s.early_stopping_patience() > 0 && s.validation_dataset_id().empty()) {
    return FieldError("early_stopping_patience", "needs validation_dataset_id");
  }
  if (s.task() == v1::SEQ_2_SEQ_LM && s.has_packing() && s.packing()) {
    return FieldError("packing", "SEQ_2_SEQ_LM cannot pack: each record is one input/target pair");
  }
  if (s.task() != v1::SEQ_2_SEQ_LM && s.max_target_len() != 0) {
    return FieldError("max_target_len", "applies to task SEQ_2_SEQ_LM only");
  }
  if (s.export_merged() && s.token_gate().enabled()) {
    return FieldError("export_merged", "a gated adapter cannot be merged into the base weights");
  }
  return absl::OkStatus();
}

}  // namespace peftd
