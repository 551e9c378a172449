#include "common/job_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"

namespace peftd {
namespace {

v1::JobSpec Minimal() {
  v1::JobSpec s;
  s.set_base_model("tiny");
  s.set_method(v1::LORA);
  s.set_training_dataset_id("ds-1");
  return s;
}

TEST(JobSpec, DefaultsFillEveryUnsetField) {
  v1::JobSpec s = WithDefaults(Minimal());
  EXPECT_EQ(s.lora().r(), 8);
  EXPECT_EQ(s.lora().alpha(), 16);
  ASSERT_EQ(s.target_modules_size(), 2);
  EXPECT_EQ(s.target_modules(0), "q_proj");
  EXPECT_EQ(s.task(), v1::CAUSAL_LM);
  EXPECT_EQ(s.batch_size(), 8);
  EXPECT_DOUBLE_EQ(s.learning_rate(), 2e-4);
  EXPECT_DOUBLE_EQ(s.max_grad_norm(), 1.0);
  EXPECT_TRUE(s.truncate());
  EXPECT_TRUE(s.packing());
  EXPECT_EQ(s.seed(), 42u);
  EXPECT_EQ(s.max_attempts(), 3);
  EXPECT_EQ(s.workers(), 1);
  EXPECT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
}

TEST(JobSpec, ExplicitZeroesSurviveDefaults) {
  v1::JobSpec in = Minimal();
  in.set_max_grad_norm(0);
  in.set_truncate(false);
  in.set_seed(0);
  v1::JobSpec s = WithDefaults(in);
  EXPECT_EQ(s.max_grad_norm(), 0);
  EXPECT_FALSE(s.truncate());
  EXPECT_EQ(s.seed(), 0u);
}

TEST(JobSpec, PackingDefaultsOnForCausalLmOnly) {
  v1::JobSpec in = Minimal();
  in.set_packing(false);
  EXPECT_FALSE(WithDefaults(in).packing());
  v1::JobSpec cls = Minimal();
  cls.set_task(v1::SEQ_CLS);
  cls.set_num_labels(2);
  EXPECT_FALSE(WithDefaults(cls).packing());
  EXPECT_TRUE(ValidateJobSpec(WithDefaults(cls)).ok());
  // A spec defaulted as CAUSAL_LM and then switched to SEQ_CLS keeps packing: true; it is valid,
  // and the worker does not pack classification records (spec_adapter_test).
  cls.set_packing(true);
  EXPECT_TRUE(ValidateJobSpec(WithDefaults(cls)).ok());
}

TEST(JobSpec, GateDefaultsOnlyWhenEnabled) {
  v1::JobSpec in = Minimal();
  EXPECT_EQ(WithDefaults(in).token_gate().s(), 0);
  in.mutable_token_gate()->set_enabled(true);
  EXPECT_DOUBLE_EQ(WithDefaults(in).token_gate().s(), 4e-5);
}

struct BadCase {
  const char* field;
  std::function<void(v1::JobSpec&)> mutate;
};

TEST(JobSpec, EveryBadFieldIsNamed) {
  const BadCase cases[] = {
      {"base_model", [](v1::JobSpec& s) { s.clear_base_model(); }},
      {"method", [](v1::JobSpec& s) { s.set_method(v1::METHOD_UNSPECIFIED); }},
      {"method_params", [](v1::JobSpec& s) { s.mutable_hut()->set_r(4); }},
      {"lora.r", [](v1::JobSpec& s) { s.mutable_lora()->set_r(-1); }},
      {"lora.dropout", [](v1::JobSpec& s) { s.mutable_lora()->set_dropout(1.0f); }},
      {"adalora.target_r",
       [](v1::JobSpec& s) {
         s.set_method(v1::ADALORA);
         s.mutable_adalora()->set_init_r(4);
         s.mutable_adalora()->set_target_r(6);
       }},
      {"adalora.tinit",
       [](v1::JobSpec& s) {
         s.set_method(v1::ADALORA);
         s.set_max_steps(100);
         s.mutable_adalora()->set_tinit(60);
         s.mutable_adalora()->set_tfinal(40);
       }},
      {"adadhp.tfinal",
       [](v1::JobSpec& s) {
         s.set_method(v1::ADADHP);
         s.mutable_adadhp()->set_tinit(10);
         s.mutable_adadhp()->set_tfinal(5);
       }},
      {"token_gate.lambda",
       [](v1::JobSpec& s) {
         s.mutable_token_gate()->set_enabled(true);
         s.mutable_token_gate()->set_lambda(-1);
       }},
      {"target_modules[1]",
       [](v1::JobSpec& s) {
         s.add_target_modules("q_proj");
         s.add_target_modules("re:((");
       }},
      {"layers_to_transform[0]", [](v1::JobSpec& s) { s.add_layers_to_transform(-2); }},
      {"num_labels",
       [](v1::JobSpec& s) {
         s.set_task(v1::SEQ_CLS);
         s.set_num_labels(1);
       }},
      {"label_names",
       [](v1::JobSpec& s) {
         s.set_task(v1::SEQ_CLS);
         s.set_num_labels(2);
         s.add_label_names("only-one");
       }},
      {"training_dataset_id", [](v1::JobSpec& s) { s.clear_training_dataset_id(); }},
      {"chat_template", [](v1::JobSpec& s) { s.set_chat_template("vicuna"); }},
      {"batch_size", [](v1::JobSpec& s) { s.set_batch_size(-4); }},
      {"learning_rate", [](v1::JobSpec& s) { s.set_learning_rate(-1); }},
      {"warmup_ratio", [](v1::JobSpec& s) { s.set_warmup_ratio(1.5); }},
      {"max_grad_norm", [](v1::JobSpec& s) { s.set_max_grad_norm(-1); }},
      {"max_seq_len", [](v1::JobSpec& s) { s.set_max_seq_len(1); }},
      {"early_stopping_patience", [](v1::JobSpec& s) { s.set_early_stopping_patience(2); }},
      {"export_merged",
       [](v1::JobSpec& s) {
         s.set_export_merged(true);
         s.mutable_token_gate()->set_enabled(true);
       }},
  };
  for (const auto& c : cases) {
    v1::JobSpec s = Minimal();
    c.mutate(s);
    absl::Status st = ValidateJobSpec(WithDefaults(s));
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(st.message().substr(0, std::string(c.field).size() + 1), std::string(c.field) + ":")
        << st.message();
  }
}

// --- Ranges (issue 12: non-finite numbers and absurd sizes were accepted) -----------------------

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// A valid spec (defaults filled) with the method or gate that makes `path` apply.
v1::JobSpec SpecFor(const std::string& path) {
  v1::JobSpec s = Minimal();
  s.set_validation_dataset_id("ds-2");  // early_stopping_patience needs one
  if (absl::StartsWith(path, "adalora.")) s.set_method(v1::ADALORA);
  if (absl::StartsWith(path, "hut.")) s.set_method(v1::HUT);
  if (absl::StartsWith(path, "adadhp.")) s.set_method(v1::ADADHP);
  if (absl::StartsWith(path, "token_gate.")) s.mutable_token_gate()->set_enabled(true);
  if (absl::StartsWith(path, "init_from.")) s.mutable_init_from()->set_job("job-1");
  if (path == "max_target_len") s.set_task(v1::SEQ_2_SEQ_LM);  // refused on other tasks
  s = WithDefaults(s);
  if (path == "adalora.target_r") s.mutable_adalora()->set_init_r(4096);
  if (path == "adalora.init_r") s.mutable_adalora()->set_target_r(0);
  return s;
}

// Sets the numeric field at `path` (a repeated one gets this single entry).
void SetNumber(Message* m, const std::string& path, double v) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
    m = m->GetReflection()->MutableMessage(m, f);
  }
  const FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts.back());
  ASSERT_NE(f, nullptr) << path;
  const auto* r = m->GetReflection();
  if (f->is_repeated()) {
    r->ClearField(m, f);
    ASSERT_EQ(f->cpp_type(), FieldDescriptor::CPPTYPE_INT32) << path;
    r->AddInt32(m, f, static_cast<int32_t>(v));
    return;
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      r->SetInt32(m, f, static_cast<int32_t>(v));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      r->SetInt64(m, f, static_cast<int64_t>(v));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      r->SetFloat(m, f, static_cast<float>(v));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->SetDouble(m, f, v);
      break;
    default:
      FAIL() << path << " is not a settable number";
  }
}

const FieldDescriptor* FieldAt(const std::string& path) {
  const google::protobuf::Descriptor* d = v1::JobSpec::descriptor();
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const FieldDescriptor* f = d->FindFieldByName(parts[i]);
    if (f == nullptr || f->message_type() == nullptr) return nullptr;
    d = f->message_type();
  }
  return d->FindFieldByName(parts.back());
}

bool IsFloat(const std::string& path) {
  return FieldAt(path)->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT;
}
bool IsFloating(const std::string& path) {
  const auto t = FieldAt(path)->cpp_type();
  return t == FieldDescriptor::CPPTYPE_FLOAT || t == FieldDescriptor::CPPTYPE_DOUBLE;
}

// The closest representable value past `v` towards `to`, in the field's own type.
double Next(const std::string& path, double v, double to) {
  if (!IsFloating(path)) return v + (to > v ? 1 : -1);
  if (IsFloat(path)) return std::nextafter(static_cast<float>(v), static_cast<float>(to));
  return std::nextafter(v, to);
}

TEST(JobSpecRanges, EveryNumericFieldHasARangeAndEveryRangeAField) {
  std::set<std::string> ranged;
  for (const FieldRange& r : JobSpecRanges()) {
    const FieldDescriptor* f = FieldAt(r.field);
    ASSERT_NE(f, nullptr) << r.field;
    EXPECT_TRUE(ranged.insert(r.field).second) << r.field << " twice";
  }
  for (const std::string& free : UnboundedJobSpecFields()) ranged.insert(free);
  auto numeric = [](const FieldDescriptor* f) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return true;
      default:
        return false;
    }
  };
  const google::protobuf::Descriptor* spec = v1::JobSpec::descriptor();
  int checked = 0;
  for (int i = 0; i < spec->field_count(); ++i) {
    const FieldDescriptor* f = spec->field(i);
    if (numeric(f)) {
      EXPECT_TRUE(ranged.count(f->name())) << f->name() << " has no range";
      ++checked;
    }
    if (f->message_type() == nullptr) continue;
    for (int j = 0; j < f->message_type()->field_count(); ++j) {
      const FieldDescriptor* sub = f->message_type()->field(j);
      if (!numeric(sub)) continue;
      EXPECT_TRUE(ranged.count(f->name() + "." + sub->name())) << f->name() << "." << sub->name();
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(JobSpecRanges().size() + UnboundedJobSpecFields().size()));
}

TEST(JobSpecRanges, BoundsAreAcceptedAndTheirNeighboursRefusedNamingTheRange) {
  for (const FieldRange& r : JobSpecRanges()) {
    const std::string path = r.field;
    const double lo = r.min_open ? Next(path, r.min, r.max) : r.min;
    const double hi = r.max_open ? Next(path, r.max, r.min) : r.max;
    for (double v : {lo, hi}) {
      v1::JobSpec s = SpecFor(path);
      SetNumber(&s, path, v);
      EXPECT_TRUE(ValidateJobSpec(s).ok()) << path << " = " << v << ": " << ValidateJobSpec(s);
    }
    const double below = r.min_open ? r.min : Next(path, r.min, r.min - 1);
    const double above = r.max_open ? r.max : Next(path, r.max, r.max + 1);
    for (double v : {below, above}) {
      v1::JobSpec s = SpecFor(path);
      SetNumber(&s, path, v);
      const absl::Status st = ValidateJobSpec(s);
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << path << " = " << v;
      const std::string field = path == "layers_to_transform" ? "layers_to_transform[0]" : path;
      EXPECT_TRUE(absl::StartsWith(st.message(), field + ": must be ")) << st.message();
      EXPECT_THAT(std::string(st.message()), testing::HasSubstr(" in " + RangeText(r) + ", got "))
          << path;
    }
  }
}

TEST(JobSpecRanges, TheIssueRowsAreRefusedWithTheirRange) {
  struct Case {
    std::function<void(v1::JobSpec&)> mutate;
    std::string message;
  };
  const float huge = 1e38f;
  const Case cases[] = {
      {[&](v1::JobSpec& s) { s.mutable_lora()->set_alpha(huge * 10); },  // 1e39 arrives as inf
       "lora.alpha: must be a finite number in (0, 1000000], got inf"},
      {[](v1::JobSpec& s) { s.set_weight_decay(std::numeric_limits<double>::infinity()); },
       "weight_decay: must be a finite number in [0, 10], got inf"},
      {[](v1::JobSpec& s) { s.set_learning_rate(std::nan("")); },
       "learning_rate: must be a finite number in (0, 10], got nan"},
      {[](v1::JobSpec& s) { s.set_num_threads(1000000); },
       "num_threads: must be in [0, 1024], got 1000000"},
      {[](v1::JobSpec& s) { s.set_batch_size(2000000000); },
       "batch_size: must be in [1, 65536], got 2000000000"},
      {[](v1::JobSpec& s) { s.set_max_seq_len(2000000000); },
       "max_seq_len: must be in [2, 1048576], got 2000000000"},
      {[](v1::JobSpec& s) { s.set_max_attempts(1000000); },
       "max_attempts: must be in [1, 100], got 1000000"},
      {[](v1::JobSpec& s) { s.set_workers(65); }, "workers: must be in [0, 64], got 65"},
      {[](v1::JobSpec& s) { s.set_workers(-1); }, "workers: must be in [0, 64], got -1"},
      {[](v1::JobSpec& s) { s.mutable_lora()->set_r(2000000000); },
       "lora.r: must be in [1, 4096], got 2000000000"},
      {[](v1::JobSpec& s) { s.set_max_steps(int64_t{1} << 62); },
       "max_steps: must be in [0, 1000000000], got 4611686018427387904"},
      // A disabled gate's numbers have no range, but NaN is refused everywhere.
      {[](v1::JobSpec& s) { s.mutable_token_gate()->set_s(std::nan("")); },
       "token_gate.s: must be a finite number, got nan"},
  };
  for (const Case& c : cases) {
    v1::JobSpec s = Minimal();
    c.mutate(s);
    EXPECT_EQ(ValidateJobSpec(WithDefaults(s)).message(), c.message);
  }
}

TEST(JobSpec, LabelNamesAndStringsAreCapped) {
  v1::JobSpec s = Minimal();
  s.set_task(v1::SEQ_CLS);
  s.set_num_labels(2);
  s.add_label_names("pos");
  s.add_label_names("pos");
  EXPECT_EQ(ValidateJobSpec(WithDefaults(s)).message(), "label_names[1]: 'pos' is given twice");
  s.set_label_names(1, std::string(257, 'x'));
  EXPECT_EQ(ValidateJobSpec(WithDefaults(s)).message(),
            "label_names[1]: must have 1 to 256 characters, got 257");
  s.set_label_names(1, "");
  EXPECT_EQ(ValidateJobSpec(WithDefaults(s)).message(),
            "label_names[1]: must have 1 to 256 characters, got 0");
  v1::JobSpec t = Minimal();
  t.set_base_model(std::string(5000, 'm'));
  EXPECT_EQ(ValidateJobSpec(WithDefaults(t)).message(),
            "base_model: at most 4096 characters, got 5000");
  t = Minimal();
  t.set_training_dataset_id(std::string(300, 'd'));
  EXPECT_EQ(ValidateJobSpec(WithDefaults(t)).message(),
            "training_dataset_id: at most 256 characters, got 300");
}

TEST(JobSpec, EnumNumbersThatNameNoValueAreRefused) {
  v1::JobSpec s = Minimal();
  s.set_task(static_cast<v1::TaskType>(42));
  EXPECT_EQ(ValidateJobSpec(WithDefaults(s)).message(),
            "task: 42 is not a TaskType (known: CAUSAL_LM, SEQ_CLS, SEQ_2_SEQ_LM)");
  s = Minimal();
  s.set_lr_schedule(static_cast<v1::LrSchedule>(-3));
  EXPECT_THAT(std::string(ValidateJobSpec(WithDefaults(s)).message()),
              ::testing::StartsWith("lr_schedule: -3 is not a LrSchedule (known: "));
}

TEST(JobSpec, ModulePatternsAreCompiledWithRe2) {
  v1::JobSpec s = Minimal();
  // Issue 12: this killed the server with SIGSEGV inside std::regex.
  s.add_target_modules("re:" + std::string(50000, '(') + std::string(50000, ')'));
  EXPECT_EQ(ValidateJobSpec(WithDefaults(s)).message(),
            "target_modules[0]: at most 512 characters per entry, got 100003");
  v1::JobSpec t = Minimal();
  t.add_exclude_modules("re:(");
  EXPECT_THAT(std::string(ValidateJobSpec(WithDefaults(t)).message()),
              testing::StartsWith("exclude_modules[0]: bad regular expression (RE2 syntax): "));
  v1::JobSpec u = Minimal();
  u.add_target_modules("q_proj");
  u.add_target_modules("re:(.*)*z");  // linear in RE2, and mixed with a plain name
  EXPECT_TRUE(ValidateJobSpec(WithDefaults(u)).ok());
}

// docs/job-spec.md states every range the code enforces, in the row of its field.
TEST(JobSpecRanges, TheDocsStateTheSameRanges) {
  std::ifstream in(std::string(PEFTD_SOURCE_DIR) + "/docs/job-spec.md");
  ASSERT_TRUE(in) << "docs/job-spec.md";
  std::map<std::string, std::string> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "| `")) continue;
    const size_t end = line.find('`', 3);
    rows[line.substr(3, end - 3)] = line;
  }
  for (const FieldRange& r : JobSpecRanges()) {
    ASSERT_TRUE(rows.count(r.field)) << r.field;
    EXPECT_THAT(rows[r.field], testing::HasSubstr("| `" + RangeText(r) + "` |")) << r.field;
  }
  for (const std::string& free : UnboundedJobSpecFields()) {
    EXPECT_THAT(rows[free], testing::HasSubstr("| any |")) << free;
  }
}

}  // namespace
}  // namespace peftd
