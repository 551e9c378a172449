// Job files: JSON (protobuf JSON of JobSpec) and YAML map onto the same spec; errors name the
// file, the field and, for YAML, the line.
#include "clients/cli/job_spec_file.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "fake_job_service.h"

namespace peftd::cli {
namespace {

using google::protobuf::util::MessageDifferencer;

constexpr char kJson[] = R"({
  "base_model": "tiny-llama",
  "method": "ADALORA",
  "adalora": {"init_r": 12, "target_r": 8, "tinit": "10", "beta1": 0.85},
  "token_gate": {"enabled": true, "s": 4e-5, "lambda": 1e-6},
  "target_modules": ["q_proj", "v_proj"],
  "layers_to_transform": [0, 3],
  "task": "SEQ_CLS",
  "num_labels": 2,
  "training_dataset_id": "ds-0123456789abcdef",
  "maxSteps": "1000",
  "learning_rate": 0.0002,
  "lr_schedule": "COSINE",
  "max_grad_norm": 0,
  "seed": 7,
  "truncate": false
})";

constexpr char kYaml[] = R"(# the same job in YAML
base_model: tiny-llama
method: adalora          # case-insensitive
adalora:
  init_r: 12
  target_r: 8
  tinit: 10
  beta1: 0.85
token_gate: {enabled: true, s: 4e-5, lambda: 1e-6}
target_modules: [q_proj, v_proj]
layers_to_transform:
  - 0
  - 3
task: seq-cls
num_labels: 2
training_dataset_id: ds-0123456789abcdef
max_steps: 1000
learning_rate: 2e-4
lr_schedule: cosine
max_grad_norm: 0
seed: 7
truncate: false
)";

v1::JobSpec Expected() {
  v1::JobSpec s;
  s.set_base_model("tiny-llama");
  s.set_method(v1::ADALORA);
  s.mutable_adalora()->set_init_r(12);
  s.mutable_adalora()->set_target_r(8);
  s.mutable_adalora()->set_tinit(10);
  s.mutable_adalora()->set_beta1(0.85f);
  s.mutable_token_gate()->set_enabled(true);
  s.mutable_token_gate()->set_s(4e-5);
  s.mutable_token_gate()->set_lambda(1e-6);
  s.add_target_modules("q_proj");
  s.add_target_modules("v_proj");
  s.add_layers_to_transform(0);
  s.add_layers_to_transform(3);
  s.set_task(v1::SEQ_CLS);
  s.set_num_labels(2);
  s.set_training_dataset_id("ds-0123456789abcdef");
  s.set_max_steps(1000);
  s.set_learning_rate(2e-4);
  s.set_lr_schedule(v1::COSINE);
  s.set_max_grad_norm(0);  // optional: explicitly 0 is not unset
  s.set_seed(7);
  s.set_truncate(false);
  return s;
}

std::string Error(absl::string_view text, JobFileFormat format, const char* name = "job.yaml") {
  auto spec = ParseJobSpec(text, name, format);
  EXPECT_FALSE(spec.ok()) << text;
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

TEST(JobSpecFile, JsonMapsEveryField) {
  auto spec = ParseJobSpec(kJson, "job.json", JobFileFormat::kJson);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, Expected())) << spec->DebugString();
  EXPECT_TRUE(spec->has_max_grad_norm());
  EXPECT_TRUE(spec->has_truncate());
}

TEST(JobSpecFile, YamlMapsOntoTheSameSpec) {
  auto spec = ParseJobSpec(kYaml, "job.yaml", JobFileFormat::kYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, Expected())) << spec->DebugString();
}

TEST(JobSpecFile, YamlScalarsTakeTheFieldsType) {
  // A name that looks like a number is still a string; a quoted number still sets an int.
  auto spec = ParseJobSpec("base_model: 123\nmax_steps: \"50\"\nchat_template: 'true'\n", "j.yaml",
                           JobFileFormat::kYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->base_model(), "123");
  EXPECT_EQ(spec->max_steps(), 50);
  EXPECT_EQ(spec->chat_template(), "true");
  // A single value where a list is expected; null leaves the field unset.
  spec = ParseJobSpec("target_modules: q_proj\nseed: ~\n", "j.yaml", JobFileFormat::kYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->target_modules_size(), 1);
  EXPECT_FALSE(spec->has_seed());
}

TEST(JobSpecFile, YamlErrorsNameFileLineAndField) {
  EXPECT_EQ(Error("base_model: tiny\nlora:\n  r: eight\n", JobFileFormat::kYaml),
            "job.yaml:3: lora.r: expected an integer, got 'eight'");
  EXPECT_EQ(Error("base_model: tiny\nlearnig_rate: 0.1\n", JobFileFormat::kYaml),
            "job.yaml:2: learnig_rate: unknown field of JobSpec; did you mean 'learning_rate'?");
  EXPECT_EQ(Error("method: lorax\n", JobFileFormat::kYaml),
            "job.yaml:1: method: unknown value 'lorax': one of lora, dora, adalora, hut, adadhp");
  EXPECT_EQ(Error("token_gate:\n  enabled: maybe\n", JobFileFormat::kYaml),
            "job.yaml:2: token_gate.enabled: expected true or false, got 'maybe'");
  EXPECT_EQ(Error("layers_to_transform:\n  - 1\n  - x\n", JobFileFormat::kYaml),
            "job.yaml:3: layers_to_transform[1]: expected an integer, got 'x'");
  EXPECT_EQ(Error("seed: -1\n", JobFileFormat::kYaml),
            "job.yaml:1: seed: expected a non-negative integer, got '-1'");
  EXPECT_EQ(Error("num_labels: 99999999999\n", JobFileFormat::kYaml),
            "job.yaml:1: num_labels: out of range: '99999999999'");
  EXPECT_EQ(Error("lora: {r: 8}\nhut: {r: 4}\n", JobFileFormat::kYaml),
            "job.yaml:2: hut: 'lora' and 'hut' are both set: give the parameters of one "
            "method_params only");
  EXPECT_EQ(Error("lora: 8\n", JobFileFormat::kYaml),
            "job.yaml:1: lora: expected a mapping of fields, got '8'");
  EXPECT_EQ(Error("- a\n- b\n", JobFileFormat::kYaml),
            "job.yaml: expected a mapping of fields, got a list");
  EXPECT_EQ(Error("", JobFileFormat::kYaml),
            "job.yaml: the file is empty; expected the fields of a JobSpec (base_model, method, "
            "...)");
  std::string syntax = Error("base_model: [unclosed\nmethod: lora\n", JobFileFormat::kYaml);
  EXPECT_TRUE(absl::StartsWith(syntax, "job.yaml:")) << syntax;
  EXPECT_TRUE(absl::StrContains(syntax, "invalid YAML")) << syntax;
}

TEST(JobSpecFile, JsonErrorsNameFileAndField) {
  EXPECT_EQ(Error(R"({"lora": {"r": "eight"}})", JobFileFormat::kJson, "job.json"),
            "job.json: lora.r: expected an integer, got 'eight'");
  EXPECT_EQ(Error(R"({"base_model": 5})", JobFileFormat::kJson, "job.json"),
            "job.json: base_model: expected a string, got 5 (put it in quotes)");
  EXPECT_EQ(Error(R"({"epochs": 1.5})", JobFileFormat::kJson, "job.json"),
            "job.json: epochs: expected an integer, got 1.5");
  EXPECT_EQ(Error(R"({"zzz": 1})", JobFileFormat::kJson, "job.json"),
            "job.json: zzz: unknown field of JobSpec (field names are those of JobSpec in "
            "proto/peftd/v1/job.proto)");
  std::string syntax =
      Error("{\n  \"base_model\": \"x\",\n  oops\n}", JobFileFormat::kJson, "job.json");
  EXPECT_TRUE(absl::StartsWith(syntax, "job.json:3: invalid JSON")) << syntax;
}

TEST(JobSpecFile, LoadPicksTheFormatByExtensionOrContent) {
  auto dir = testing::TempDir("spec_file");
  std::ofstream(dir / "job.json") << kJson;
  std::ofstream(dir / "job.yml") << kYaml;
  std::ofstream(dir / "job.spec") << kJson;  // no known extension: '{' means JSON
  for (const char* name : {"job.json", "job.yml", "job.spec"}) {
    auto spec = LoadJobSpecFile((dir / name).string());
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status();
    EXPECT_TRUE(MessageDifferencer::Equals(*spec, Expected())) << name;
  }
  auto missing = LoadJobSpecFile((dir / "nope.yaml").string());
  // A missing file is "not found" (exit 3), as every file named on the command line.
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "nope.yaml"));
}

// The example of docs/job-spec.md ("Writing a job") parses and means what the page says.
TEST(JobSpecFile, TheDocumentedExampleParses) {
  std::ifstream in(std::string(PEFTD_SOURCE_DIR) + "/docs/job-spec.md");
  ASSERT_TRUE(in) << "docs/job-spec.md";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  size_t start = doc.find("```yaml\n");
  ASSERT_NE(start, std::string::npos);
  start += 8;
  const std::string yaml = doc.substr(start, doc.find("```", start) - start);
  auto spec = ParseJobSpec(yaml, "docs/job-spec.md", JobFileFormat::kYaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->method(), v1::LORA);
  EXPECT_EQ(spec->lora().r(), 16);
  EXPECT_TRUE(spec->token_gate().enabled());
  EXPECT_EQ(spec->target_modules_size(), 4);
  EXPECT_EQ(spec->lr_schedule(), v1::COSINE);
}

}  // namespace
}  // namespace peftd::cli
